//! [`Spool`]: output on its way from the relay to one of our own streams
//! (stdout or stderr), so that `exec` keeps reading the relay whatever that
//! stream does. A paused reader (`less`, a busy terminal, `| (sleep 6; wc)`)
//! would otherwise stop `exec` reading its socket, and the relay closes a
//! client that stops reading as a slow consumer.
//!
//! Bytes are held in memory up to [`MEMORY_LIMIT`], then appended to an
//! anonymous temporary file (it has no name and vanishes with the process),
//! and written out in order by a thread of their own. The total held is
//! bounded by the spool's limit: past it [`Spool::is_full`] says so and the
//! caller stops reading the relay until [`Spool::changed`] reports room. A
//! stream whose reader went away (`EPIPE`, as with `| head -2`) discards the
//! rest and reports [`Gone::Closed`]. It never decides what to do about it.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::Notify;

/// Bytes held in memory before output spills into the temporary file.
pub const MEMORY_LIMIT: usize = 8 << 20;

/// Bytes read back from the temporary file per write.
const FILE_CHUNK: usize = 64 << 10;

/// Why a spool's stream takes no more output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gone {
    /// Its reader went away (a broken pipe): what a `cat` would die of, quietly.
    Closed,
    /// A write failed otherwise; the text says how.
    Failed(String),
}

/// Output held for one stream; see the module docs.
#[derive(Debug)]
pub struct Spool {
    shared: Arc<Shared>,
    limit: usize,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the writer thread: more output, or the end of it.
    more: Condvar,
    /// Wakes the async side: room came back, the stream went away, or the
    /// writer finished.
    changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    memory: VecDeque<Vec<u8>>,
    in_memory: usize,
    /// The temporary file, created on the first spill.
    file: Option<File>,
    /// File bytes appended so far, and of those already written out.
    file_end: u64,
    file_read: u64,
    /// Bytes pushed and not yet written out (memory, file and in flight).
    held: usize,
    /// No more output will be pushed.
    input_done: bool,
    gone: Option<Gone>,
    /// The writer thread finished.
    finished: bool,
}

impl State {
    fn spilling(&self) -> bool {
        self.file_read < self.file_end
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicked writer left consistent counters behind; keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Spool {
    /// A spool writing to `out` on a thread named `name`, holding at most
    /// `limit` bytes.
    pub fn new(name: &str, out: Box<dyn Write + Send>, limit: usize) -> io::Result<Spool> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            more: Condvar::new(),
            changed: Notify::new(),
        });
        let writer = shared.clone();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || write_out(&writer, out))?;
        Ok(Spool {
            shared,
            limit: limit.max(1),
        })
    }

    /// Holds `data` for the stream (discarded once the stream is gone).
    /// Fails only if the temporary file cannot be created or written.
    pub fn push(&self, data: Vec<u8>) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let mut s = self.shared.lock();
        if s.gone.is_some() {
            return Ok(());
        }
        let len = data.len();
        if s.spilling() || s.in_memory + len > MEMORY_LIMIT {
            let end = s.file_end;
            let file = match &mut s.file {
                Some(file) => file,
                empty => empty.insert(tempfile::tempfile().map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "creating a temporary file in {} to hold output: {}",
                            std::env::temp_dir().display(),
                            crate::shell::io_cause(&e)
                        ),
                    )
                })?),
            };
            file.write_all_at(&data, end).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "holding output in a temporary file in {}: {}",
                        std::env::temp_dir().display(),
                        crate::shell::io_cause(&e)
                    ),
                )
            })?;
            s.file_end += len as u64;
        } else {
            s.memory.push_back(data);
            s.in_memory += len;
        }
        s.held += len;
        drop(s);
        self.shared.more.notify_one();
        Ok(())
    }

    /// Bytes held and not yet written out.
    pub fn held(&self) -> usize {
        self.shared.lock().held
    }

    /// Whether the spool holds its limit (or more): stop reading the relay.
    pub fn is_full(&self) -> bool {
        self.held() >= self.limit
    }

    /// The limit this spool was made with.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Why the stream takes no more output, if it does not.
    pub fn gone(&self) -> Option<Gone> {
        self.shared.lock().gone.clone()
    }

    /// Resolves after a change: room came back, the stream went away or the
    /// writer finished. May resolve spuriously; callers look again.
    pub async fn changed(&self) {
        self.shared.changed.notified().await;
    }

    /// No more output: the writer thread writes what is held and finishes.
    pub fn close(&self) {
        self.shared.lock().input_done = true;
        self.shared.more.notify_one();
    }

    /// Whether everything pushed before [`Spool::close`] was written out (or
    /// the stream went away).
    pub fn is_finished(&self) -> bool {
        self.shared.lock().finished
    }

    /// Closes and waits until the writer finished.
    pub async fn finish(&self) {
        self.close();
        while !self.is_finished() {
            self.changed().await;
        }
    }
}

/// What the writer takes next.
enum Next {
    Memory(Vec<u8>),
    File(Vec<u8>),
    Done,
}

fn take_next(shared: &Shared) -> io::Result<Next> {
    let mut s = shared.lock();
    loop {
        if let Some(chunk) = s.memory.pop_front() {
            s.in_memory -= chunk.len();
            return Ok(Next::Memory(chunk));
        }
        if s.spilling() {
            let want = (s.file_end - s.file_read).min(FILE_CHUNK as u64) as usize;
            let mut buf = vec![0u8; want];
            if let Some(file) = &s.file {
                file.read_exact_at(&mut buf, s.file_read)?;
            }
            return Ok(Next::File(buf));
        }
        if s.input_done {
            return Ok(Next::Done);
        }
        s = shared
            .more
            .wait(s)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }
}

/// The writer thread: writes held output in order until closed and empty,
/// or until the stream goes away.
fn write_out(shared: &Shared, mut out: Box<dyn Write + Send>) {
    loop {
        let (chunk, from_file) = match take_next(shared) {
            Ok(Next::Memory(chunk)) => (chunk, false),
            Ok(Next::File(chunk)) => (chunk, true),
            Ok(Next::Done) => break,
            Err(e) => {
                let why = format!("reading back held output: {}", crate::shell::io_cause(&e));
                give_up(shared, Gone::Failed(why));
                break;
            }
        };
        if let Err(e) = out.write_all(&chunk).and_then(|()| out.flush()) {
            let gone = match e.kind() {
                io::ErrorKind::BrokenPipe => Gone::Closed,
                _ => Gone::Failed(crate::shell::io_cause(&e)),
            };
            give_up(shared, gone);
            break;
        }
        let mut s = shared.lock();
        s.held -= chunk.len();
        if from_file {
            s.file_read += chunk.len() as u64;
            if s.file_read == s.file_end {
                // Drained: start the file over so it never grows past the backlog.
                s.file_read = 0;
                s.file_end = 0;
                if let Some(file) = &s.file {
                    let _ = file.set_len(0);
                }
            }
        }
        drop(s);
        shared.changed.notify_one();
    }
    shared.lock().finished = true;
    shared.changed.notify_one();
}

/// The stream is gone: drop what is held and say why.
fn give_up(shared: &Shared, gone: Gone) {
    let mut s = shared.lock();
    s.memory.clear();
    s.in_memory = 0;
    s.file = None;
    s.file_end = 0;
    s.file_read = 0;
    s.held = 0;
    s.gone = Some(gone);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that hands every write to a channel, blocking while `gate`
    /// is held, to play a paused reader.
    struct Gated {
        gate: Arc<Mutex<()>>,
        got: std::sync::mpsc::Sender<Vec<u8>>,
    }

    impl Write for Gated {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _open = self.gate.lock().unwrap_or_else(|p| p.into_inner());
            let _ = self.got.send(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn spool_holds_past_memory_in_a_file_and_keeps_order() {
        let gate = Arc::new(Mutex::new(()));
        let (tx, rx) = std::sync::mpsc::channel();
        let paused = gate.lock().unwrap();
        let out = Gated {
            gate: gate.clone(),
            got: tx,
        };
        let spool = Spool::new("test-spool", Box::new(out), 64 << 20).unwrap();
        let chunk = |i: u32| -> Vec<u8> { i.to_be_bytes().repeat(16 << 10) };
        // 20 x 64 KiB = 20 MiB: more than MEMORY_LIMIT, so part goes to the file.
        for i in 0..320 {
            spool.push(chunk(i)).unwrap();
        }
        assert!(spool.held() >= 19 << 20, "{}", spool.held());
        assert!(spool.shared.lock().file.is_some(), "nothing spilled");
        assert!(!spool.is_full());
        drop(paused);
        spool.finish().await;
        let all: Vec<u8> = rx.try_iter().flatten().collect();
        let expected: Vec<u8> = (0..320).flat_map(chunk).collect();
        assert!(all == expected, "bytes lost or reordered");
        assert_eq!(spool.held(), 0);
    }

    #[tokio::test]
    async fn spool_reports_full_at_its_limit_and_a_broken_pipe() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let gate = Arc::new(Mutex::new(()));
        let (tx, _rx) = std::sync::mpsc::channel();
        let paused = gate.lock().unwrap();
        let out = Gated {
            gate: gate.clone(),
            got: tx,
        };
        let spool = Spool::new("test-spool", Box::new(out), 1000).unwrap();
        spool.push(vec![1; 600]).unwrap();
        spool.push(vec![2; 600]).unwrap();
        assert!(spool.is_full());
        drop(paused);
        spool.finish().await;
        assert!(!spool.is_full());

        let spool = Spool::new("test-spool", Box::new(Broken), 1000).unwrap();
        spool.push(vec![1; 10]).unwrap();
        while spool.gone().is_none() {
            spool.changed().await;
        }
        assert_eq!(spool.gone(), Some(Gone::Closed));
        spool.push(vec![1; 10]).unwrap();
        assert_eq!(spool.held(), 0, "output for a closed stream is discarded");
    }
}
