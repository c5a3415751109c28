//! The crash-safe run journal: one JSON line per event, written and synced as it happens.
//!
//! Each line is an [`Entry`]: a sequence number, a Unix time in milliseconds and the event.
//! Lines are appended with a single `write_all` and `File::sync_data`, so after a crash the file
//! holds every event that was reported written, plus at most one torn (incomplete) last line. The
//! reader ([`read_journal`]) ignores such a torn tail and says so; [`JournalWriter::reopen`]
//! truncates it before appending again.

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Errors of writing or reading a journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The journal file could not be created, read, written or synced.
    #[error("journal {path}: {source}")]
    Io {
        /// The journal file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A complete line (not the torn last one) is not a valid entry.
    #[error("journal {path}, line {line}: {reason}")]
    Corrupt {
        /// The journal file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// An event could not be serialised (a non-finite float, for example).
    #[error("cannot serialise journal event: {0}")]
    Serialise(String),
}

/// One journal line: sequence number, time and event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry<E> {
    /// 0-based position of the entry in the journal.
    pub seq: u64,
    /// Unix time in milliseconds when the entry was written.
    pub unix_ms: u64,
    /// The event itself.
    pub event: E,
}

/// What [`read_journal`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalContents<E> {
    /// Every complete, valid entry in order.
    pub entries: Vec<Entry<E>>,
    /// Bytes of the file up to the end of the last complete entry.
    pub valid_len: u64,
    /// The torn last line (a process killed mid-write), if any; it was ignored.
    pub torn_tail: Option<String>,
}

/// Milliseconds since the Unix epoch now (0 if the clock is before 1970).
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Appends events to a journal file, syncing each one to disk before returning.
#[derive(Debug)]
pub struct JournalWriter {
    file: File,
    path: PathBuf,
    next_seq: u64,
}

impl JournalWriter {
    /// Creates a new, empty journal; fails if the file exists.
    pub fn create(path: &Path) -> Result<Self, JournalError> {
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(path)
            .map_err(|source| JournalError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
            next_seq: 0,
        })
    }

    /// Reopens an existing journal to append to it: reads it, truncates a torn last line, and
    /// returns the writer with the entries read so far.
    pub fn reopen<E: DeserializeOwned>(
        path: &Path,
    ) -> Result<(Self, JournalContents<E>), JournalError> {
        let contents = read_journal::<E>(path)?;
        let io = |source| JournalError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new().write(true).open(path).map_err(io)?;
        if contents.torn_tail.is_some() {
            file.set_len(contents.valid_len).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        drop(file);
        let file = OpenOptions::new().append(true).open(path).map_err(io)?;
        let next_seq = contents.entries.last().map_or(0, |e| e.seq + 1);
        Ok((
            Self {
                file,
                path: path.to_path_buf(),
                next_seq,
            },
            contents,
        ))
    }

    /// The journal file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sequence number the next entry will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Writes one event as one line and syncs it to disk; returns the entry's sequence number
    /// and time as written.
    pub fn append<E: Serialize>(&mut self, event: &E) -> Result<Entry<()>, JournalError> {
        let entry = Entry {
            seq: self.next_seq,
            unix_ms: unix_ms_now(),
            event,
        };
        let mut line =
            serde_json::to_string(&entry).map_err(|e| JournalError::Serialise(e.to_string()))?;
        line.push('\n');
        let io = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(line.as_bytes()).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.next_seq += 1;
        Ok(Entry {
            seq: entry.seq,
            unix_ms: entry.unix_ms,
            event: (),
        })
    }
}

/// Reads a journal, tolerating a torn last line (ignored and reported in
/// [`JournalContents::torn_tail`]). A bad line that is not the last one is an error.
pub fn read_journal<E: DeserializeOwned>(path: &Path) -> Result<JournalContents<E>, JournalError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|source| JournalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    parse_journal(path, &bytes)
}

fn parse_journal<E: DeserializeOwned>(
    path: &Path,
    bytes: &[u8],
) -> Result<JournalContents<E>, JournalError> {
    let mut entries = Vec::new();
    let mut valid_len = 0u64;
    let mut start = 0usize;
    let mut line_no = 0usize;
    while let Some(rest) = bytes.get(start..).filter(|rest| !rest.is_empty()) {
        line_no += 1;
        let end = rest.iter().position(|b| *b == b'\n');
        let (line, complete, next) = match end {
            Some(i) => (rest.split_at(i).0, true, start + i + 1),
            None => (rest, false, bytes.len()),
        };
        let is_last = next >= bytes.len();
        let parsed = std::str::from_utf8(line)
            .map_err(|e| e.to_string())
            .and_then(|s| {
                if s.trim().is_empty() {
                    Err("empty line".to_string())
                } else {
                    serde_json::from_str::<Entry<E>>(s).map_err(|e| e.to_string())
                }
            });
        match parsed {
            Ok(entry) if complete => {
                entries.push(entry);
                valid_len = next as u64;
            }
            Err(reason) if !is_last => {
                return Err(JournalError::Corrupt {
                    path: path.to_path_buf(),
                    line: line_no,
                    reason,
                });
            }
            // The last line, unparsable or without its newline: the writer writes the newline in
            // the same call as the line, so either way the write did not finish. Ignore it.
            _ => {
                return Ok(JournalContents {
                    entries,
                    valid_len,
                    torn_tail: Some(String::from_utf8_lossy(line).into_owned()),
                });
            }
        }
        start = next;
    }
    Ok(JournalContents {
        entries,
        valid_len,
        torn_tail: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Ev {
        A { n: u32 },
        B { s: String },
    }

    #[test]
    fn append_then_read_round_trips() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("journal.jsonl");
        let mut w = JournalWriter::create(&path)?;
        w.append(&Ev::A { n: 1 })?;
        w.append(&Ev::B { s: "x\ny".into() })?;
        let c = read_journal::<Ev>(&path)?;
        assert_eq!(c.entries.len(), 2);
        assert_eq!(c.entries[1].seq, 1);
        assert_eq!(c.entries[1].event, Ev::B { s: "x\ny".into() });
        assert!(c.torn_tail.is_none());
        assert!(
            JournalWriter::create(&path).is_err(),
            "create must not clobber"
        );
        Ok(())
    }

    #[test]
    fn torn_last_line_is_ignored_and_truncated_on_reopen() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("journal.jsonl");
        let mut w = JournalWriter::create(&path)?;
        w.append(&Ev::A { n: 1 })?;
        drop(w);
        let good = std::fs::read(&path)?;
        let mut f = OpenOptions::new().append(true).open(&path)?;
        f.write_all(br#"{"seq":1,"unix_ms":5,"event":{"type":"a","#)?;
        drop(f);
        let c = read_journal::<Ev>(&path)?;
        assert_eq!(c.entries.len(), 1);
        assert!(c.torn_tail.is_some());
        assert_eq!(c.valid_len, good.len() as u64);
        let (mut w, c2) = JournalWriter::reopen::<Ev>(&path)?;
        assert_eq!(c2.entries.len(), 1);
        assert_eq!(w.next_seq(), 1);
        w.append(&Ev::A { n: 2 })?;
        let c3 = read_journal::<Ev>(&path)?;
        assert_eq!(c3.entries.len(), 2);
        assert!(c3.torn_tail.is_none());
        assert_eq!(c3.entries[1].event, Ev::A { n: 2 });
        Ok(())
    }

    #[test]
    fn complete_json_without_newline_is_torn() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("j.jsonl");
        std::fs::write(
            &path,
            "{\"seq\":0,\"unix_ms\":1,\"event\":{\"type\":\"a\",\"n\":1}}\n{\"seq\":1,\"unix_ms\":1,\"event\":{\"type\":\"a\",\"n\":2}}",
        )?;
        let c = read_journal::<Ev>(&path)?;
        assert_eq!(c.entries.len(), 1);
        assert!(c.torn_tail.is_some());
        Ok(())
    }

    #[test]
    fn corrupt_middle_line_is_an_error_naming_the_line() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("j.jsonl");
        std::fs::write(
            &path,
            "{\"seq\":0,\"unix_ms\":1,\"event\":{\"type\":\"a\",\"n\":1}}\ngarbage\n{\"seq\":1,\"unix_ms\":1,\"event\":{\"type\":\"a\",\"n\":2}}\n",
        )?;
        match read_journal::<Ev>(&path) {
            Err(JournalError::Corrupt { line, .. }) => assert_eq!(line, 2),
            other => panic!("expected corrupt line 2, got {other:?}"),
        }
        Ok(())
    }
}
