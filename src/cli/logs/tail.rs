//! [`Tail`]: reads an exec.log directory (`exec.log` and its rotations) as one
//! stream of lines, oldest first, following the files by identity (device and
//! inode), not by name.
//!
//! The relay rotates by renaming (`exec.log.2` -> `.3`, `.1` -> `.2`,
//! `exec.log` -> `.1`, then a new `exec.log`), so a name says little between
//! two looks: a fast command can rotate twice in between. Each look takes a
//! consistent listing of the directory (two in a row that agree), opens every
//! file it has not seen yet and keeps it open: an open file keeps its inode
//! (no new file can be mistaken for it) and its data (a file rotated out and
//! deleted can still be finished). Files are then read oldest first: the ones
//! that vanished since the last look, then the listed ones from the highest
//! number down to `exec.log`. A live file that shrank was truncated and is
//! read again from its start. Only a file created and deleted between two
//! looks (more rotations than the relay keeps) can be missed.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::shell::exec_log::FILE_NAME;
use crate::shell::io_context;

/// Listings taken per look, at most, waiting for two that agree.
const LISTING_ATTEMPTS: usize = 8;

/// Bytes read per read call.
const READ_CHUNK: usize = 64 << 10;

/// A file's identity: (device, inode).
type Identity = (u64, u64);

/// One line read from the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailLine {
    /// The file's name when it was read (`exec.log`, `exec.log.2`).
    pub file: String,
    /// Line number within that file, from 1.
    pub number: u64,
    /// The line, without its newline (invalid UTF-8 replaced).
    pub text: String,
}

/// A file being followed.
#[derive(Debug)]
struct Tracked {
    file: File,
    id: Identity,
    /// Its name in the latest listing.
    name: String,
    /// Bytes consumed so far.
    pos: u64,
    /// A line begun but not ended yet.
    partial: Vec<u8>,
    lines: u64,
}

impl Tracked {
    /// The line begun in `partial`, now ended: numbered, `partial` emptied.
    fn take_line(&mut self) -> TailLine {
        self.lines += 1;
        let text = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        TailLine {
            file: self.name.clone(),
            number: self.lines,
            text,
        }
    }
}

/// Follows an exec.log directory; see the module docs.
#[derive(Debug)]
pub struct Tail {
    dir: PathBuf,
    files: Vec<Tracked>,
    buf: Vec<u8>,
}

impl Tail {
    /// Follows `dir` from the start of its oldest file (it need not hold any
    /// file yet).
    pub fn new(dir: impl Into<PathBuf>) -> Tail {
        Tail {
            dir: dir.into(),
            files: Vec::new(),
            buf: vec![0; READ_CHUNK],
        }
    }

    /// Whether any file was found so far.
    pub fn found_any(&self) -> bool {
        !self.files.is_empty()
    }

    /// Hands every whole line written since the last look to `each`, oldest
    /// first. A line cut off at the end of a rotated file is handed over as
    /// it is.
    pub fn poll(&mut self, mut each: impl FnMut(TailLine) -> io::Result<()>) -> io::Result<()> {
        let listing = self.open_listed()?;
        // Oldest first: files gone from the listing, then the listing's order.
        let rank = |t: &Tracked| listing.iter().position(|(_, id)| *id == t.id);
        self.files.sort_by_key(|t| rank(t).map_or(0, |r| r + 1));
        let live = listing
            .last()
            .filter(|(name, _)| name == FILE_NAME)
            .map(|(_, id)| *id);
        for i in 0..self.files.len() {
            let is_live = Some(self.files[i].id) == live;
            self.read_file(i, is_live, &mut each)?;
        }
        self.files.retain(|t| rank(t).is_some());
        Ok(())
    }

    /// A consistent listing, oldest first, with every listed file open.
    fn open_listed(&mut self) -> io::Result<Vec<(String, Identity)>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let listing = self.listing()?;
            let mut renamed_meanwhile = false;
            for (name, id) in &listing {
                if let Some(t) = self.files.iter_mut().find(|t| t.id == *id) {
                    t.name.clone_from(name);
                    continue;
                }
                match self.open(name, *id)? {
                    Some(t) => self.files.push(t),
                    None => renamed_meanwhile = true,
                }
            }
            if !renamed_meanwhile || attempt >= LISTING_ATTEMPTS {
                return Ok(listing);
            }
        }
    }

    /// Opens `name` if it still is the file `id`; `None` if it was renamed
    /// or removed since the listing.
    fn open(&self, name: &str, id: Identity) -> io::Result<Option<Tracked>> {
        let file = match File::open(self.dir.join(name)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_context(&e, "opening", &self.dir.join(name))),
        };
        let meta = file.metadata()?;
        if (meta.dev(), meta.ino()) != id {
            return Ok(None);
        }
        Ok(Some(Tracked {
            file,
            id,
            name: name.to_owned(),
            pos: 0,
            partial: Vec::new(),
            lines: 0,
        }))
    }

    /// Two listings in a row that agree (a rotation in between shows).
    fn listing(&self) -> io::Result<Vec<(String, Identity)>> {
        let mut last = list_dir(&self.dir)?;
        for _ in 1..LISTING_ATTEMPTS {
            let next = list_dir(&self.dir)?;
            if next == last {
                break;
            }
            last = next;
        }
        Ok(last)
    }

    /// Reads file `i` from where it stopped to its end.
    fn read_file(
        &mut self,
        i: usize,
        is_live: bool,
        each: &mut impl FnMut(TailLine) -> io::Result<()>,
    ) -> io::Result<()> {
        let t = &mut self.files[i];
        let len = t.file.metadata()?.len();
        if len < t.pos {
            // Truncated in place: what it holds now is all new.
            t.pos = 0;
            t.partial.clear();
            t.lines = 0;
        }
        t.file.seek(SeekFrom::Start(t.pos))?;
        loop {
            let n = match t.file.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            t.pos += n as u64;
            let mut rest = &self.buf[..n];
            while let Some(end) = rest.iter().position(|&b| b == b'\n') {
                t.partial.extend_from_slice(&rest[..end]);
                rest = &rest[end + 1..];
                each(t.take_line())?;
            }
            t.partial.extend_from_slice(rest);
        }
        if !is_live && !t.partial.is_empty() {
            // A rotated file is complete: its last line will get no newline.
            each(t.take_line())?;
        }
        Ok(())
    }
}

/// `exec.log` and `exec.log.N` in `dir` with their identities, oldest first.
fn list_dir(dir: &Path) -> io::Result<Vec<(String, Identity)>> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_context(&e, "reading", dir))?;
    let mut found: Vec<(Option<u32>, String, Identity)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_context(&e, "reading", dir))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let rank = if name == FILE_NAME {
            None
        } else {
            match name
                .strip_prefix(FILE_NAME)
                .and_then(|rest| rest.strip_prefix('.'))
                .and_then(|n| n.parse::<u32>().ok())
            {
                Some(n) => Some(n),
                None => continue,
            }
        };
        // Gone since the listing: the next look sees where it went.
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        found.push((rank, name, (meta.dev(), meta.ino())));
    }
    // Highest number first, exec.log (no number) last.
    found.sort_by_key(|(rank, _, _)| {
        rank.map_or(u64::from(u32::MAX) + 1, |n| u64::from(u32::MAX - n))
    });
    Ok(found.into_iter().map(|(_, name, id)| (name, id)).collect())
}
