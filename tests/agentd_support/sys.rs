//! The Linux calls the harness needs (through `libc`): capabilities, signals
//! into a pipe, descriptor flags, pidfds, and looking processes up in /proc.
//! Everything called between `fork` and `exec` (the `pre_exec` closures) is
//! marked so and only makes system calls: no allocation, no locks.

use std::ffi::c_int;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

/// The capabilities agentd must not have on a host, with their numbers
/// (linux/capability.h): setting the clock (`core.clock.sync`), rebooting
/// (`core.shutdown` as PID 1), loading modules, and mount, namespace and
/// other administration.
pub const DROPPED_CAPS: [(u32, &str); 4] = [
    (25, "CAP_SYS_TIME"),
    (22, "CAP_SYS_BOOT"),
    (16, "CAP_SYS_MODULE"),
    (21, "CAP_SYS_ADMIN"),
];

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAP_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const NO_CAPS: CapData = CapData {
    effective: 0,
    permitted: 0,
    inheritable: 0,
};

/// Turns a -1 return into the thread's errno.
pub fn check(ret: c_int) -> io::Result<c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn read_caps() -> io::Result<(CapHeader, [CapData; 2])> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [NO_CAPS; 2];
    // SAFETY: capget writes one header and two data words, both provided.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((header, data))
}

/// Drops [`DROPPED_CAPS`] from the calling thread's bounding set and from
/// its effective, permitted and inheritable sets. Safe between `fork` and
/// `exec` (system calls on the stack only). Dropping the bounding set
/// before `exec` is what makes it hold for every thread and child of the
/// new program: a root `exec` gets the bounding set as its permitted set.
pub fn drop_caps() -> io::Result<()> {
    for (cap, _) in DROPPED_CAPS {
        // SAFETY: prctl with integer arguments only.
        let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if ret != 0 {
            let error = io::Error::last_os_error();
            // EINVAL: the kernel does not know the capability, so nobody has it.
            if error.raw_os_error() != Some(libc::EINVAL) {
                return Err(error);
            }
        }
    }
    let (mut header, mut data) = read_caps()?;
    for (cap, _) in DROPPED_CAPS {
        let word = (cap / 32) as usize;
        let bit = !(1u32 << (cap % 32));
        data[word].effective &= bit;
        data[word].permitted &= bit;
        data[word].inheritable &= bit;
    }
    // SAFETY: capset reads one header and two data words, both provided.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Checks that the calling thread has none of [`DROPPED_CAPS`] in any set,
/// the bounding set included; names the first one it still has.
pub fn verify_caps_dropped() -> Result<(), String> {
    let (_, data) = read_caps().map_err(|e| format!("capget: {e}"))?;
    for (cap, name) in DROPPED_CAPS {
        let word = (cap / 32) as usize;
        let bit = 1u32 << (cap % 32);
        let sets = data[word].effective | data[word].permitted | data[word].inheritable;
        if sets & bit != 0 {
            return Err(format!(
                "{name} is still effective, permitted or inheritable"
            ));
        }
        // SAFETY: prctl with integer arguments only.
        let bounded = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) };
        if bounded != 0 {
            return Err(format!("{name} is still in the bounding set ({bounded})"));
        }
    }
    Ok(())
}

/// Asks for SIGKILL when the thread that forked this process ends, then
/// checks that the parent (`parent`, as this process sees it) had not
/// already gone before the request took effect. Safe between `fork` and
/// `exec`.
pub fn die_with_parent(parent: Option<libc::pid_t>) -> io::Result<()> {
    // SAFETY: prctl and getppid with integer arguments only.
    unsafe {
        check(libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ))?;
        if parent.is_some_and(|parent| libc::getppid() != parent) {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    Ok(())
}

/// Sets or clears `FD_CLOEXEC` on `fd` (for this process's descriptor
/// table only). Safe between `fork` and `exec`.
pub fn set_cloexec(fd: c_int, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on an integer descriptor.
    unsafe {
        let flags = check(libc::fcntl(fd, libc::F_GETFD))?;
        let flags = if on {
            flags | libc::FD_CLOEXEC
        } else {
            flags & !libc::FD_CLOEXEC
        };
        check(libc::fcntl(fd, libc::F_SETFD, flags))?;
    }
    Ok(())
}

/// Where the signal handler writes (-1 until [`signals_to_pipe`]).
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn note_signal(signal: c_int) {
    // SAFETY: errno is thread-local; write(2) is async-signal-safe. A full
    // pipe drops the byte, which is fine: one pending byte wakes the poll.
    unsafe {
        let errno = *libc::__errno_location();
        let byte = signal as u8;
        let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
        if fd >= 0 {
            libc::write(fd, (&byte as *const u8).cast(), 1);
        }
        *libc::__errno_location() = errno;
    }
}

/// Installs a process-wide handler for each of `signals` that writes the
/// signal's number as one byte into a non-blocking pipe, and returns the
/// pipe's read end. A handler (rather than a blocked mask and signalfd)
/// works whichever thread the kernel picks, and a PID 1 receives from its
/// own namespace only the signals it handles.
pub fn signals_to_pipe(signals: &[c_int]) -> io::Result<c_int> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: pipe2 fills the two descriptors given.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) })?;
    SIGNAL_PIPE.store(fds[1], Ordering::Relaxed);
    for &signal in signals {
        // SAFETY: a zeroed sigaction is valid; the handler is async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = note_signal as extern "C" fn(c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART | libc::SA_NOCLDSTOP;
            libc::sigemptyset(&mut action.sa_mask);
            check(libc::sigaction(signal, &action, std::ptr::null_mut()))?;
        }
    }
    Ok(fds[0])
}

/// Sends `signal` to `pid` only if `still(pid)` holds once a pidfd pins
/// the process, so that a pid reused in between is never hit (`still`
/// checks that it is the process meant: its parent, its marker).
pub fn signal_if(pid: u32, still: impl Fn(u32) -> bool, signal: c_int) -> bool {
    // SAFETY: pidfd_open takes a pid and flags.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if pidfd < 0 {
        return false;
    }
    let pidfd = pidfd as c_int;
    let sent = still(pid) && {
        // SAFETY: pidfd_send_signal on the descriptor just opened.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd,
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        ret == 0
    };
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::close(pidfd) };
    sent
}

/// The parent of `pid` as the host sees it (zombies included).
pub fn parent_of(pid: u32) -> Option<u32> {
    status_field(pid, "PPid")?.parse().ok()
}

/// The children of `parent`, zombies and processes still exiting included.
pub fn children_of(parent: u32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&pid| parent_of(pid) == Some(parent))
        .collect()
}

/// The numeric entries of /proc.
pub fn all_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The arguments of `pid` (empty for a zombie or a process gone).
pub fn cmdline(pid: u32) -> Vec<String> {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return Vec::new();
    };
    raw.split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// Whether one of `pid`'s arguments is exactly `arg`.
pub fn has_arg(pid: u32, arg: &str) -> bool {
    cmdline(pid).iter().any(|a| a == arg)
}

/// The processes (zombies included) with an argument exactly `arg`.
pub fn pids_with_arg(arg: &str) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&pid| has_arg(pid, arg))
        .collect()
}

/// A PID namespace, held open: while a handle exists its inode number (the
/// `pid:[inode]` of /proc/*/ns/pid) cannot be given to a new namespace, so
/// "processes in this namespace" keeps meaning this one after it emptied.
pub struct PidNs {
    file: std::fs::File,
    name: String,
}

impl PidNs {
    /// The PID namespace `pid` lives in.
    pub fn of(pid: u32) -> io::Result<PidNs> {
        let path = format!("/proc/{pid}/ns/pid");
        let file = std::fs::File::open(&path)?;
        // The inode of the open file, read after opening: the same process.
        let name = std::fs::read_link(format!("/proc/self/fd/{}", {
            use std::os::fd::AsRawFd;
            file.as_raw_fd()
        }))?
        .to_string_lossy()
        .into_owned();
        Ok(PidNs { file, name })
    }

    /// `pid:[inode]`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The processes living in it now (zombies included).
    pub fn pids(&self) -> Vec<u32> {
        all_pids()
            .into_iter()
            .filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/ns/pid"))
                    .is_ok_and(|link| Path::new(&self.name) == link)
            })
            .collect()
    }

    /// Another handle on it.
    pub fn try_clone(&self) -> io::Result<PidNs> {
        Ok(PidNs {
            file: self.file.try_clone()?,
            name: self.name.clone(),
        })
    }
}

/// A field of /proc/`pid`/status (`CapEff`, `NSpid`, ...), trimmed.
pub fn status_field(pid: u32, field: &str) -> Option<String> {
    field_of(&format!("/proc/{pid}/status"), field)
}

/// A field of this process's /proc status, pids in the host's numbering
/// (the numbering of the /proc mounted, whatever this process's namespace).
pub fn own_status_field(field: &str) -> Option<String> {
    field_of("/proc/self/status", field)
}

fn field_of(path: &str, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(path).ok()?;
    status.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name == field).then(|| value.trim().to_owned())
    })
}
