//! The WASIp1 (`wasi_snapshot_preview1`) functions edgefn implements itself: arguments,
//! environment, stdin from a buffer, stdout into a capped buffer, stderr into the log, clocks,
//! randomness and exit. Every other WASIp1 import of a module is linked to a function that
//! returns `ENOSYS`, so modules built by ordinary toolchains load, and their file and socket
//! calls fail cleanly.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Linker, Module, Val, ValType};

use crate::memory;

/// The WASIp1 import module name.
pub const MODULE: &str = "wasi_snapshot_preview1";

// WASI errno values.
const SUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EFAULT: i32 = 21;
const EFBIG: i32 = 22;
const EINVAL: i32 = 28;
const ENOSYS: i32 = 52;
const ESPIPE: i32 = 70;

/// The WASIp1 functions [`add_to_linker`] implements.
const IMPLEMENTED: &[&str] = &[
    "args_sizes_get",
    "args_get",
    "environ_sizes_get",
    "environ_get",
    "fd_write",
    "fd_read",
    "fd_close",
    "fd_seek",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "fd_fdstat_get",
    "clock_time_get",
    "clock_res_get",
    "random_get",
    "sched_yield",
    "proc_exit",
];

/// WASI filetype of stdin, stdout and stderr.
const FILETYPE_CHARACTER_DEVICE: u8 = 2;

/// The error `proc_exit` ends a call with, carrying the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcExit(pub i32);

impl std::fmt::Display for ProcExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the module exited with code {}", self.0)
    }
}

impl std::error::Error for ProcExit {}

/// The WASI state of one instance.
pub struct WasiCtx {
    args: Vec<Vec<u8>>,
    env: Vec<Vec<u8>>,
    stdin: Vec<u8>,
    stdin_read: usize,
    stdout: Vec<u8>,
    stdout_cap: usize,
    stdout_overflowed: bool,
    stderr: StderrLog,
    started: Instant,
}

impl WasiCtx {
    /// Creates the state for one call: `argv`, `environ` as `(name, value)` pairs, stdin bytes,
    /// and the maximum number of stdout bytes kept. stderr lines are logged with `revision`.
    pub fn new(
        revision: &str,
        args: Vec<String>,
        env: &[(String, String)],
        stdin: Vec<u8>,
        stdout_cap: usize,
    ) -> Self {
        Self {
            args: args.into_iter().map(String::into_bytes).collect(),
            env: env
                .iter()
                .map(|(name, value)| format!("{name}={value}").into_bytes())
                .collect(),
            stdin,
            stdin_read: 0,
            stdout: Vec::new(),
            stdout_cap,
            stdout_overflowed: false,
            stderr: StderrLog {
                revision: revision.to_owned(),
                pending: Vec::new(),
                logged: 0,
            },
            started: Instant::now(),
        }
    }

    /// Returns what the module wrote to stdout since the last call, or `None` if that was more
    /// than the cap. Either way the buffer starts empty again, so an instance that serves many
    /// calls gets the cap per call.
    pub fn take_stdout(&mut self) -> Option<Vec<u8>> {
        let stdout = std::mem::take(&mut self.stdout);
        if std::mem::replace(&mut self.stdout_overflowed, false) {
            return None;
        }
        Some(stdout)
    }

    /// Logs a partial last stderr line the module did not end with a newline, and starts a new
    /// budget of stderr lines; callers flush once per call into the module.
    pub fn flush_stderr(&mut self) {
        self.stderr.flush();
        self.stderr.logged = 0;
    }

    fn write(&mut self, fd: i32, bytes: &[u8]) -> Result<(), i32> {
        match fd {
            1 => {
                if self.stdout.len() + bytes.len() > self.stdout_cap {
                    self.stdout_overflowed = true;
                    return Err(EFBIG);
                }
                self.stdout.extend_from_slice(bytes);
                Ok(())
            }
            2 => {
                self.stderr.write(bytes);
                Ok(())
            }
            _ => Err(EBADF),
        }
    }
}

/// stderr of one instance, logged a line at a time, at most [`MAX_STDERR_LINES`] lines per
/// call into the module so that a module cannot flood Envoy's log.
struct StderrLog {
    revision: String,
    pending: Vec<u8>,
    logged: usize,
}

/// Maximum stderr lines logged for one call; later lines are dropped, and one warning line
/// reports it.
const MAX_STDERR_LINES: usize = 100;

/// Maximum length of a logged stderr line; longer lines are logged in pieces of this size.
const MAX_STDERR_LINE: usize = 4096;

impl StderrLog {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if byte == b'\n' || self.pending.len() >= MAX_STDERR_LINE {
                self.flush();
            }
            if byte != b'\n' {
                self.pending.push(byte);
            }
        }
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.logged += 1;
        if self.logged < MAX_STDERR_LINES {
            let line = String::from_utf8_lossy(&self.pending);
            tracing::info!(revision = %self.revision, "function stderr: {}", line.escape_debug());
        } else if self.logged == MAX_STDERR_LINES {
            tracing::warn!(
                revision = %self.revision,
                "function stderr: more than {MAX_STDERR_LINES} lines; the rest is dropped"
            );
        }
        self.pending.clear();
    }
}

/// Adds the WASIp1 functions to `linker`. Imports of `module` from WASIp1 that edgefn does not
/// implement are linked to a function returning `ENOSYS`.
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    module: &Module,
    get: fn(&mut T) -> &mut WasiCtx,
) -> wasmtime::Result<()> {
    add_args_and_env(linker, get)?;
    add_fds(linker, get)?;
    add_clocks_and_misc(linker, get)?;
    add_unsupported(linker, module)
}

fn add_args_and_env<T: 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut WasiCtx,
) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "args_sizes_get",
        move |mut caller: Caller<'_, T>, count_ptr: i32, size_ptr: i32| {
            let args = get(caller.data_mut()).args.clone();
            sizes_get(&mut caller, &args, count_ptr, size_ptr)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "args_get",
        move |mut caller: Caller<'_, T>, pointers_ptr: i32, buf_ptr: i32| {
            let args = get(caller.data_mut()).args.clone();
            strings_get(&mut caller, &args, pointers_ptr, buf_ptr)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "environ_sizes_get",
        move |mut caller: Caller<'_, T>, count_ptr: i32, size_ptr: i32| {
            let env = get(caller.data_mut()).env.clone();
            sizes_get(&mut caller, &env, count_ptr, size_ptr)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "environ_get",
        move |mut caller: Caller<'_, T>, pointers_ptr: i32, buf_ptr: i32| {
            let env = get(caller.data_mut()).env.clone();
            strings_get(&mut caller, &env, pointers_ptr, buf_ptr)
        },
    )?;
    Ok(())
}

fn sizes_get<T>(
    caller: &mut Caller<'_, T>,
    items: &[Vec<u8>],
    count_ptr: i32,
    size_ptr: i32,
) -> i32 {
    let size: usize = items.iter().map(|item| item.len() + 1).sum();
    let (Ok(count), Ok(size)) = (u32::try_from(items.len()), u32::try_from(size)) else {
        return EINVAL;
    };
    if memory::write_u32(caller, count_ptr, count) && memory::write_u32(caller, size_ptr, size) {
        SUCCESS
    } else {
        EFAULT
    }
}

/// Writes NUL-terminated `items` from `buf_ptr` on and their addresses at `pointers_ptr`.
fn strings_get<T>(
    caller: &mut Caller<'_, T>,
    items: &[Vec<u8>],
    pointers_ptr: i32,
    buf_ptr: i32,
) -> i32 {
    let mut pointer = pointers_ptr;
    let mut next = buf_ptr;
    for item in items {
        let mut terminated = item.clone();
        terminated.push(0);
        let Ok(address) = u32::try_from(next) else {
            return EFAULT;
        };
        if !memory::write_u32(caller, pointer, address) || !memory::write(caller, next, &terminated)
        {
            return EFAULT;
        }
        let Some(after) = i32::try_from(terminated.len())
            .ok()
            .and_then(|len| next.checked_add(len))
        else {
            return EFAULT;
        };
        next = after;
        pointer = pointer.wrapping_add(4);
    }
    SUCCESS
}

fn add_fds<T: 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut WasiCtx,
) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "fd_write",
        move |mut caller: Caller<'_, T>, fd: i32, iovs: i32, iovs_len: i32, written_ptr: i32| {
            let Some(chunks) = read_iovecs(&mut caller, iovs, iovs_len) else {
                return EFAULT;
            };
            let mut written = 0u32;
            for (ptr, len) in chunks {
                let Some(bytes) = memory::read(&mut caller, ptr, len) else {
                    return EFAULT;
                };
                if let Err(errno) = get(caller.data_mut()).write(fd, &bytes) {
                    return errno;
                }
                written = written.saturating_add(bytes.len() as u32);
            }
            if memory::write_u32(&mut caller, written_ptr, written) {
                SUCCESS
            } else {
                EFAULT
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_read",
        move |mut caller: Caller<'_, T>, fd: i32, iovs: i32, iovs_len: i32, read_ptr: i32| {
            if fd != 0 {
                return EBADF;
            }
            let Some(chunks) = read_iovecs(&mut caller, iovs, iovs_len) else {
                return EFAULT;
            };
            let mut total = 0u32;
            for (ptr, len) in chunks {
                let ctx = get(caller.data_mut());
                let available = ctx.stdin.len() - ctx.stdin_read;
                let take = available.min(len as usize);
                let bytes = ctx.stdin[ctx.stdin_read..ctx.stdin_read + take].to_vec();
                if !memory::write(&mut caller, ptr, &bytes) {
                    return EFAULT;
                }
                get(caller.data_mut()).stdin_read += take;
                total = total.saturating_add(take as u32);
                if take < len as usize {
                    break;
                }
            }
            if memory::write_u32(&mut caller, read_ptr, total) {
                SUCCESS
            } else {
                EFAULT
            }
        },
    )?;
    linker.func_wrap(MODULE, "fd_close", |fd: i32| -> i32 {
        if (0..=2).contains(&fd) {
            SUCCESS
        } else {
            EBADF
        }
    })?;
    linker.func_wrap(MODULE, "fd_seek", |_: i32, _: i64, _: i32, _: i32| -> i32 {
        ESPIPE
    })?;
    linker.func_wrap(MODULE, "fd_prestat_get", |_: i32, _: i32| -> i32 { EBADF })?;
    linker.func_wrap(
        MODULE,
        "fd_prestat_dir_name",
        |_: i32, _: i32, _: i32| -> i32 { EBADF },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_fdstat_get",
        |mut caller: Caller<'_, T>, fd: i32, stat_ptr: i32| -> i32 {
            if !(0..=2).contains(&fd) {
                return EBADF;
            }
            // fdstat: filetype u8 at 0, flags u16 at 2, rights_base u64 at 8,
            // rights_inheriting u64 at 16; 24 bytes.
            let mut stat = [0u8; 24];
            stat[0] = FILETYPE_CHARACTER_DEVICE;
            stat[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
            if memory::write(&mut caller, stat_ptr, &stat) {
                SUCCESS
            } else {
                EFAULT
            }
        },
    )?;
    Ok(())
}

/// Reads `count` iovecs (`u32` pointer, `u32` length) at `iovs`.
fn read_iovecs<T>(caller: &mut Caller<'_, T>, iovs: i32, count: i32) -> Option<Vec<(i32, i32)>> {
    let size = count.checked_mul(8)?;
    let raw = memory::read(caller, iovs, size)?;
    raw.chunks_exact(8)
        .map(|chunk| {
            let ptr = u32::from_le_bytes(chunk[0..4].try_into().ok()?);
            let len = u32::from_le_bytes(chunk[4..8].try_into().ok()?);
            Some((i32::try_from(ptr).ok()?, i32::try_from(len).ok()?))
        })
        .collect()
}

fn add_clocks_and_misc<T: 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut WasiCtx,
) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "clock_time_get",
        move |mut caller: Caller<'_, T>, clock: i32, _precision: i64, time_ptr: i32| -> i32 {
            let nanos = match clock {
                0 => SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|elapsed| elapsed.as_nanos() as u64)
                    .unwrap_or(0),
                1..=3 => get(caller.data_mut()).started.elapsed().as_nanos() as u64,
                _ => return EINVAL,
            };
            if memory::write(&mut caller, time_ptr, &nanos.to_le_bytes()) {
                SUCCESS
            } else {
                EFAULT
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "clock_res_get",
        |mut caller: Caller<'_, T>, _clock: i32, resolution_ptr: i32| -> i32 {
            if memory::write(&mut caller, resolution_ptr, &1_000u64.to_le_bytes()) {
                SUCCESS
            } else {
                EFAULT
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "random_get",
        |mut caller: Caller<'_, T>, buf_ptr: i32, len: i32| -> i32 {
            // Fill the guest's buffer in place, after checking it lies in its memory, so a
            // huge length costs no host memory.
            let Some(memory) = memory::exported(&mut caller) else {
                return EFAULT;
            };
            let data = memory.data_mut(&mut caller);
            let Some(range) = memory::range(data, buf_ptr, len) else {
                return EFAULT;
            };
            if getrandom::fill(&mut data[range]).is_err() {
                return EINVAL;
            }
            SUCCESS
        },
    )?;
    linker.func_wrap(MODULE, "sched_yield", || -> i32 { SUCCESS })?;
    linker.func_wrap(MODULE, "proc_exit", |code: i32| -> wasmtime::Result<()> {
        Err(wasmtime::Error::new(ProcExit(code)))
    })?;
    Ok(())
}

/// Links every WASIp1 import of `module` that is still undefined to a function returning
/// `ENOSYS`, or trapping when its signature has no `i32` result to carry the errno.
fn add_unsupported<T: 'static>(linker: &mut Linker<T>, module: &Module) -> wasmtime::Result<()> {
    for import in module.imports() {
        if import.module() != MODULE {
            continue;
        }
        let Some(ty) = import.ty().func().cloned() else {
            continue;
        };
        if IMPLEMENTED.contains(&import.name()) {
            continue;
        }
        let name = import.name().to_owned();
        let returns_errno = matches!(ty.results().collect::<Vec<_>>().as_slice(), [ValType::I32]);
        linker.func_new(
            MODULE,
            import.name(),
            ty,
            move |_caller, _params, results| {
                if returns_errno {
                    results[0] = Val::I32(ENOSYS);
                    Ok(())
                } else {
                    Err(wasmtime::Error::msg(format!(
                        "WASI function {name} is not supported"
                    )))
                }
            },
        )?;
    }
    Ok(())
}
