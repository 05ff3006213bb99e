//! The production client transport: a Unix socket listener at a path. Rule
//! `owner_only_socket` (docs/ARCHITECTURE.md states it): the socket is bound
//! under a temporary name in the same directory, made 0600 and renamed into
//! place, so the path is never reachable with a wider mode; a stale socket
//! file (a connect is refused) is replaced, a live one is never taken over,
//! anything else at the path is left alone. The file is removed when the
//! listener drops, if it is still the one this listener created (same device
//! and inode). This file owns the socket
//! file's lifecycle; a Unix socket's way to tell a client that only shut down
//! its sending side from one that left is [`HangupWatch`], in `transport.rs`.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};

use super::transport::{HangupWatch, Listener};
use crate::cause::io_cause;

/// Why the socket could not be bound.
#[derive(Debug)]
pub enum BindError {
    /// Another process accepts connections on the path.
    AlreadyListening {
        /// The socket path.
        path: PathBuf,
    },
    /// Something that is not a socket sits at the path.
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The path is longer than a Unix socket address holds.
    PathTooLong {
        /// The path.
        path: PathBuf,
    },
    /// A system call failed.
    Io {
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindError::AlreadyListening { path } => write!(
                f,
                "another process (a running relay?) is listening on {}",
                path.display()
            ),
            BindError::PathTooLong { path } => write!(
                f,
                "{} is {} bytes long; a Unix socket path holds at most {MAX_SOCKET_PATH} bytes \
                 (choose a shorter path)",
                path.display(),
                path.as_os_str().len()
            ),
            BindError::NotASocket { path } => write!(
                f,
                "{} exists and is not a socket; remove it or choose another path",
                path.display()
            ),
            BindError::Io { what, path, source } => {
                write!(f, "{what} {}: {}", path.display(), io_cause(source))
            }
        }
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BindError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The longest path a Unix socket address holds (`sun_path` is 108 bytes,
/// one of them the terminating NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Creates the socket's missing parent directories owner-only (0700), whatever
/// the umask; directories that exist keep their mode.
fn create_private_parent(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(up) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_parent(up)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// A Unix socket listener that owns its socket file (see the module docs).
#[derive(Debug)]
pub struct UnixSocketListener {
    listener: UnixListener,
    path: PathBuf,
    /// (device, inode) of the socket file we created.
    identity: (u64, u64),
}

impl UnixSocketListener {
    /// Binds `path` with mode 0600, creating its parent directory. Must be
    /// called inside a tokio runtime.
    pub fn bind(path: &Path) -> Result<UnixSocketListener, BindError> {
        let io_err = |what: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |source| BindError::Io {
                what,
                path: p,
                source,
            }
        };
        if path.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(BindError::PathTooLong {
                path: path.to_path_buf(),
            });
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_private_parent(parent).map_err(io_err("creating directory", parent))?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                match std::os::unix::net::UnixStream::connect(path) {
                    Ok(_) => {
                        return Err(BindError::AlreadyListening {
                            path: path.to_path_buf(),
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        tracing::info!(path = %path.display(), "replacing stale socket");
                        remove_if_present(path).map_err(io_err("removing stale socket", path))?;
                    }
                    Err(e) => return Err(io_err("probing existing socket", path)(e)),
                }
            }
            Ok(_) => {
                return Err(BindError::NotASocket {
                    path: path.to_path_buf(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("inspecting", path)(e)),
        }
        let std_listener = bind_private(path)?;
        std_listener
            .set_nonblocking(true)
            .map_err(io_err("configuring", path))?;
        let meta = std::fs::metadata(path).map_err(io_err("inspecting", path))?;
        let listener = UnixListener::from_std(std_listener).map_err(io_err("registering", path))?;
        Ok(UnixSocketListener {
            listener,
            path: path.to_path_buf(),
            identity: (meta.dev(), meta.ino()),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Binds under a temporary name in the same directory, makes it 0600, then
/// renames it into place, so the final path is never reachable with a wider
/// mode. Falls back to binding in place if the temporary name is too long.
/// Errors name `path`, never the temporary name the user did not choose.
fn bind_private(path: &Path) -> Result<std::os::unix::net::UnixListener, BindError> {
    let chmod = |p: &Path| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
            BindError::Io {
                what: "setting mode 0600 on",
                path: path.to_path_buf(),
                source,
            }
        })
    };
    let bind_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| BindError::Io {
            what: "binding",
            path: p,
            source,
        }
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or_default());
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    match std::os::unix::net::UnixListener::bind(&tmp) {
        Ok(listener) => {
            let placed = chmod(&tmp).and_then(|()| {
                std::fs::rename(&tmp, path).map_err(|source| BindError::Io {
                    what: "renaming socket into place at",
                    path: path.to_path_buf(),
                    source,
                })
            });
            if let Err(e) = placed {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            Ok(listener)
        }
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            // The temporary name exceeds sun_path; bind in place instead.
            let listener = std::os::unix::net::UnixListener::bind(path).map_err(bind_err(path))?;
            chmod(path)?;
            Ok(listener)
        }
        Err(e) => Err(bind_err(path)(e)),
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl Listener for UnixSocketListener {
    type Conn = UnixStream;

    async fn accept(&mut self) -> io::Result<UnixStream> {
        self.listener.accept().await.map(|(stream, _)| stream)
    }

    fn watch_hangup(conn: &UnixStream) -> Option<io::Result<HangupWatch>> {
        Some(HangupWatch::new(conn))
    }
}

impl Drop for UnixSocketListener {
    fn drop(&mut self) {
        // Only remove the file if it is still ours (not a successor's socket).
        if let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && (meta.dev(), meta.ino()) == self.identity
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
