//! Where the shell's lines come from: a line editor on a terminal (completion, history), or
//! standard input line by line when it is a pipe or a file.

use super::catalogue::Catalogue;
use super::complete::Completion;
use rustyline::config::{CompletionType, Config};
use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use tokio::io::{AsyncBufReadExt, BufReader, Lines, Stdin};
use tokio::sync::oneshot;

/// The prompt of the line editor.
const PROMPT: &str = "warren> ";

/// How many lines the history keeps.
const HISTORY_SIZE: usize = 1000;

/// A request for the next line, answered with the line or `None` at the end of input.
type LineRequest = oneshot::Sender<Option<String>>;

/// The shell's lines.
pub enum Input {
    /// The line editor, on a thread of its own (it blocks on the terminal).
    Terminal(mpsc::Sender<LineRequest>),
    /// Standard input, read as it comes.
    Pipe(Lines<BufReader<Stdin>>),
}

impl Input {
    /// Standard input, line by line.
    pub fn pipe() -> Self {
        Self::Pipe(BufReader::new(tokio::io::stdin()).lines())
    }

    /// The line editor, completing from `catalogue` and keeping its history in `history`
    /// (none when `None`). Fails when the terminal cannot be set up.
    pub fn terminal(catalogue: Catalogue, history: Option<PathBuf>) -> rustyline::Result<Self> {
        let config = Config::builder()
            .completion_type(CompletionType::List)
            .max_history_size(HISTORY_SIZE)?
            .history_ignore_dups(true)?
            .auto_add_history(false)
            .build();
        let mut editor = rustyline::Editor::<Completion, FileHistory>::with_config(config)?;
        editor.set_helper(Some(Completion::new(catalogue)));
        if let Some(path) = &history {
            // No file yet is the first session; an unreadable one starts the history afresh.
            let _ = editor.load_history(path);
        }
        let (requests, incoming) = mpsc::channel::<LineRequest>();
        std::thread::Builder::new()
            .name("warren-shell-editor".to_owned())
            .spawn(move || edit(editor, &incoming, history.as_deref()))
            .map_err(ReadlineError::Io)?;
        Ok(Self::Terminal(requests))
    }

    /// The next line; `None` at the end of input (Ctrl-D on a terminal).
    pub async fn next_line(&mut self) -> Option<String> {
        match self {
            Self::Pipe(lines) => match lines.next_line().await {
                Ok(line) => line,
                Err(error) => {
                    eprintln!("error: cannot read standard input: {error}");
                    None
                }
            },
            Self::Terminal(requests) => {
                let (answer, line) = oneshot::channel();
                requests.send(answer).ok()?;
                line.await.ok().flatten()
            }
        }
    }
}

/// The editor thread: one prompt per request, until the shell stops asking or the input ends.
fn edit(
    mut editor: rustyline::Editor<Completion, FileHistory>,
    requests: &mpsc::Receiver<LineRequest>,
    mut history: Option<&Path>,
) {
    while let Ok(answer) = requests.recv() {
        let line = loop {
            match editor.readline(PROMPT) {
                Ok(line) => break Some(line),
                // Ctrl-C at the prompt drops the line, as in a shell.
                Err(ReadlineError::Interrupted) => {}
                Err(ReadlineError::Eof) => break None,
                Err(error) => {
                    eprintln!("error: cannot read the terminal: {error}");
                    break None;
                }
            }
        };
        if let (Some(line), Some(path)) = (&line, history)
            && !line.trim().is_empty()
            && editor.add_history_entry(line.as_str()).unwrap_or(false)
            && !remember(&mut editor, path)
        {
            // Said once; the session keeps its history in memory.
            history = None;
        }
        if answer.send(line).is_err() {
            break;
        }
    }
}

/// Appends the newest line to the history file at once, so a session that is killed keeps it;
/// says why and returns false when it cannot.
fn remember(editor: &mut rustyline::Editor<Completion, FileHistory>, path: &Path) -> bool {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        let _ = std::fs::create_dir_all(dir);
    }
    match editor.append_history(path) {
        Ok(()) => true,
        Err(error) => {
            eprintln!(
                "warning: cannot write the history to {}: {error}",
                path.display()
            );
            false
        }
    }
}

/// The history file when no flag names one: `$XDG_STATE_HOME/warren/shell_history` when
/// `XDG_STATE_HOME` is set, else `~/.warren_history`; none without either.
pub fn default_history_file() -> Option<PathBuf> {
    let set = |name| std::env::var_os(name).filter(|value| !value.is_empty());
    if let Some(state) = set("XDG_STATE_HOME") {
        return Some(PathBuf::from(state).join("warren").join("shell_history"));
    }
    set("HOME").map(|home| PathBuf::from(home).join(".warren_history"))
}
