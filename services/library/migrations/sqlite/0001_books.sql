-- The catalogue. `id` is AUTOINCREMENT so an id is never handed out twice, even after a delete:
-- the indexer relies on that. `version` comes from `library_version`, one library-wide sequence.
CREATE TABLE books (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    version    INTEGER NOT NULL,
    title      TEXT    NOT NULL,
    author     TEXT    NOT NULL,
    year       INTEGER,
    language   TEXT,
    text       TEXT    NOT NULL,
    text_bytes INTEGER NOT NULL
);

-- The library-wide version sequence: every add, update and delete takes the next value.
CREATE TABLE library_version (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO library_version (id, value) VALUES (1, 0);

-- Settings of this catalogue, e.g. its `catalog_id`.
CREATE TABLE library_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
