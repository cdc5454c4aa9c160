//! What can stop a process from starting: [`ConfigError`] for flags and files that cannot be
//! used, [`RunError`] for everything else. Each reads as one line with its causes (see
//! [`one_line`]).

use std::path::PathBuf;
use warren_gateway::AuthConfigError;

/// A flag, or a file it names, that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key file (API keys, a JWT secret or public key) that cannot be read or used. Its
    /// content is never shown.
    #[error("{flag} {}", path.display())]
    KeyFile {
        /// The flag that named it.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: AuthConfigError,
    },
    /// An `--expose` pattern that is not one.
    #[error("invalid --expose {0}")]
    Expose(String),
    /// A `--trusted-proxy` that is no IP address or CIDR block.
    #[error("invalid --trusted-proxy")]
    TrustedProxy(#[source] warren_gateway::RateLimitError),
    /// `--jwt-issuer` or `--jwt-audience` without a key to verify tokens with.
    #[error(
        "--jwt-issuer and --jwt-audience need --jwt-hs256-secret-file or --jwt-rs256-public-key-file"
    )]
    IssuerWithoutKey,
    /// `--auth-protect-docs` with authentication off.
    #[error("--auth-protect-docs needs --api-key-file or a JWT key")]
    ProtectDocsWithoutAuth,
}

/// Why a process could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Services alone, without a gateway, in process: nothing could reach them.
    #[error(
        "services without a gateway need a broker to be reached through: pass --amqp URL or set AMQP_URL (or run the gateway in this process)"
    )]
    NoBroker,
    /// Neither a service nor a gateway to run.
    #[error("nothing to run: no service and no gateway")]
    NothingToRun,
    /// An address to listen on that cannot be bound.
    #[error("cannot listen on {address}")]
    Listen {
        /// The address.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The broker cannot be reached, or declaring on it failed.
    #[error(transparent)]
    Connect(#[from] mesh::ConnectError),
    /// A service's dependency could not be opened.
    #[error("cannot start {service}")]
    Dependency {
        /// The service.
        service: String,
        /// What its dependency reported.
        #[source]
        source: mesh::BoxError,
    },
    /// A service could not be served.
    #[error("cannot serve {service}")]
    Serve {
        /// The service.
        service: String,
        /// Why.
        #[source]
        source: mesh::ConnectError,
    },
}

/// `error` and its causes on one line, each after a `: `, as an operator reads it.
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // A cause an error already shows in its own text is not repeated.
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_follow_on_one_line() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use");
        let error = RunError::Listen {
            address: "127.0.0.1:8080".into(),
            source: io,
        };
        assert_eq!(
            one_line(&error),
            "cannot listen on 127.0.0.1:8080: address in use"
        );
    }
}
