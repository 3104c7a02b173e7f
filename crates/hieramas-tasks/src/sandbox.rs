//! Starting the untrusted runner: inside bubblewrap (kernel namespaces, read-only system files,
//! a size-capped tmpfs, rlimits, an unprivileged uid), or, only when explicitly allowed, as a
//! plain process with rlimits. Results come back on fd 3, a pipe of their own; stdout goes to
//! /dev/null and stderr to a capped buffer.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// When the grader runs as root, slot `k` runs as host uid `SLOT_UID_BASE + k`, a uid nothing
/// else uses: each slot gets its own process count (RLIMIT_NPROC) and owns no host file.
const SLOT_UID_BASE: u32 = 0x7e00_0000;

/// How programs are isolated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// bubblewrap: own user, PID, network, IPC, UTS and mount namespaces.
    Bubblewrap,
    /// A plain process with rlimits only (`SandboxOptions::allow_unsandboxed`).
    Unsandboxed,
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Bubblewrap => "bubblewrap",
            Isolation::Unsandboxed => "none",
        }
    }
}

/// rlimits and sizes of one run.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    pub address_space: u64,
    pub file_size: u64,
    pub cpu_seconds: u64,
    pub processes: u64,
    pub tmpfs_bytes: u64,
}

/// `name` on `$PATH` (or `name` itself when it has a `/`).
pub(crate) fn which(name: &Path) -> Option<PathBuf> {
    if name.components().count() > 1 {
        return name.is_file().then(|| name.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// One started runner.
pub(crate) struct Running {
    child: Child,
    /// Host pid of the sandbox's PID-namespace init (bubblewrap reports it).
    inner: Option<Pid>,
    pub events: mpsc::Receiver<Event>,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    _tmp: Option<tempfile::TempDir>,
}

pub(crate) enum Event {
    Line(Vec<u8>),
    /// The result channel carried more than its cap.
    Over,
    Eof,
}

/// The bwrap arguments, up to `--`.
fn bwrap_args(python: &Path, limits: &Limits) -> Vec<String> {
    let mut a: Vec<String> = [
        "--unshare-all",
        "--unshare-user",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--hostname",
        "sandbox",
        "--uid",
        "65534",
        "--gid",
        "65534",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for top in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
        let p = Path::new(top);
        if let Ok(target) = std::fs::read_link(p) {
            a.extend(["--symlink".into(), target.display().to_string(), top.into()]);
        } else if p.is_dir() {
            a.extend(["--ro-bind".into(), top.into(), top.into()]);
        }
    }
    // Only what the dynamic loader and Python's time module read from /etc.
    for f in ["/etc/ld.so.cache", "/etc/localtime"] {
        a.extend(["--ro-bind-try".into(), f.into(), f.into()]);
    }
    // A python outside /usr: its installation prefix, read-only.
    if let Ok(real) = std::fs::canonicalize(python)
        && !real.starts_with("/usr")
        && let Some(prefix) = real.parent().and_then(Path::parent)
    {
        let p = prefix.display().to_string();
        a.extend(["--ro-bind".into(), p.clone(), p]);
    }
    a.extend(
        [
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--size",
            &limits.tmpfs_bytes.to_string(),
            "--tmpfs",
            "/tmp",
            "--remount-ro",
            "/dev",
            "--remount-ro",
            "/",
            "--chdir",
            "/tmp",
            "--info-fd",
            "4",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    a
}

/// Starts the runner (`python -I -B -c harness`) on `request` (written to its stdin).
/// `slot` picks the host uid when running as root.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start(
    isolation: Isolation,
    bwrap: Option<&Path>,
    python: &Path,
    harness: &str,
    request: Vec<u8>,
    limits: &Limits,
    slot: usize,
    cap: usize,
) -> std::io::Result<Running> {
    let (res_r, res_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (info_r, info_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let root = nix::unistd::geteuid().is_root();
    let uid = SLOT_UID_BASE + slot as u32;
    let mut tmp = None;
    let mut cmd = match (isolation, bwrap) {
        (Isolation::Bubblewrap, Some(bwrap)) => {
            let mut c = Command::new(bwrap);
            c.args(bwrap_args(python, limits)).arg("--").arg(python);
            c.current_dir("/");
            c
        }
        _ => {
            let dir = tempfile::Builder::new()
                .prefix("hieramas-unsandboxed-")
                .tempdir()?;
            if root {
                std::os::unix::fs::chown(dir.path(), Some(uid), Some(uid))?;
            }
            let mut c = Command::new(python);
            c.current_dir(dir.path()).env("HOME", dir.path());
            tmp = Some(dir);
            c
        }
    };
    cmd.args(["-I", "-B", "-c", harness])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .env("HOME", "/tmp")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(d) = &tmp {
        cmd.env("HOME", d.path());
    }
    let mut l = limits.clone();
    if !root {
        // RLIMIT_NPROC counts every task of the host uid (checked again at each user-namespace
        // level against the limit the namespace was created with): allow this user's current
        // tasks plus the sandbox's share.
        l.processes += tasks_of_uid(nix::unistd::getuid().as_raw());
    }
    let (res_fd, info_fd) = (res_w.as_raw_fd(), info_w.as_raw_fd());
    #[allow(unsafe_code)]
    // SAFETY: between fork and exec only async-signal-safe system calls (setrlimit,
    // setgroups, setgid, setuid, dup2) run; nothing allocates.
    unsafe {
        cmd.pre_exec(move || {
            let set = |r, v: u64| setrlimit(r, v, v).map_err(std::io::Error::from);
            set(Resource::RLIMIT_AS, l.address_space)?;
            set(Resource::RLIMIT_FSIZE, l.file_size)?;
            setrlimit(Resource::RLIMIT_CPU, l.cpu_seconds, l.cpu_seconds + 1)?;
            set(Resource::RLIMIT_CORE, 0)?;
            set(Resource::RLIMIT_NPROC, l.processes)?;
            if root {
                let id = nix::unistd::Gid::from_raw(uid);
                nix::unistd::setgroups(&[])?;
                nix::unistd::setresgid(id, id, id)?;
                let id = nix::unistd::Uid::from_raw(uid);
                nix::unistd::setresuid(id, id, id)?;
            }
            // dup2 clears close-on-exec on the copies: only fds 3 and 4 reach the runner.
            // Copied above 10 first (close-on-exec), so neither lands on the other's target;
            // dup2 then clears close-on-exec on fds 3 and 4 only.
            use nix::libc::{F_DUPFD_CLOEXEC, dup2, fcntl};
            let (r, i) = (
                fcntl(res_fd, F_DUPFD_CLOEXEC, 10),
                fcntl(info_fd, F_DUPFD_CLOEXEC, 10),
            );
            if r < 0 || i < 0 || dup2(r, 3) < 0 || dup2(i, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    drop(res_w);
    drop(info_w);
    // bwrap writes its info (the init's host pid) before it runs anything untrusted; read it
    // now and close the pipe, so nothing the program writes there is ever read.
    let inner = if isolation == Isolation::Bubblewrap {
        read_info(info_r, child.id())
    } else {
        drop(info_r);
        None
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A thread of its own: a runner that never reads must not block the deadline.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&request);
        });
    }
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    if let Some(mut err) = child.stderr.take() {
        let buf = stderr.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = err.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let mut b = buf
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if b.len() < 16 << 10 {
                    b.extend_from_slice(&chunk[..n]);
                }
            }
        });
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || read_results(res_r, cap, &tx));
    Ok(Running {
        child,
        inner,
        events: rx,
        stderr,
        _tmp: tmp,
    })
}

/// Tasks (threads included) of host uid `uid`, as RLIMIT_NPROC counts them.
fn tasks_of_uid(uid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut n = 0;
    for e in dir.flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        };
        if field("Uid:") == Some(u64::from(uid)) {
            n += field("Threads:").unwrap_or(1);
        }
    }
    n
}

/// The `child-pid` of bwrap's info JSON, if it is a child of `bwrap_pid`.
fn read_info(fd: OwnedFd, bwrap_pid: u32) -> Option<Pid> {
    let mut f = std::fs::File::from(fd);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    while buf.len() < 4096 {
        match f.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.contains(&b'}') {
                    break;
                }
            }
        }
    }
    let end = buf.iter().position(|&b| b == b'}')? + 1;
    let v: serde_json::Value = serde_json::from_slice(&buf[..end]).ok()?;
    let pid = i32::try_from(v["child-pid"].as_i64()?).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let ppid = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))?
        .trim()
        .parse::<u32>()
        .ok()?;
    (ppid == bwrap_pid).then_some(Pid::from_raw(pid))
}

/// Reads the result channel into lines until its end, or past `cap` bytes in all.
fn read_results(fd: OwnedFd, cap: usize, tx: &mpsc::Sender<Event>) {
    let mut f = std::fs::File::from(fd);
    let mut line = Vec::new();
    let mut total = 0usize;
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        match f.read(&mut chunk) {
            Ok(0) | Err(_) => {
                let _ = tx.send(Event::Eof);
                return;
            }
            Ok(n) => {
                total += n;
                if total > cap {
                    let _ = tx.send(Event::Over);
                    return;
                }
                for part in chunk[..n].split_inclusive(|&b| b == b'\n') {
                    line.extend_from_slice(part);
                    if part.ends_with(b"\n") {
                        line.pop();
                        if tx.send(Event::Line(std::mem::take(&mut line))).is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

impl Running {
    /// Ends the run: kills the PID namespace's init (the kernel then kills every process of
    /// the namespace before the init is reaped), waits for bwrap to follow, and kills the
    /// process group as well. Returns the exit status and what the runner wrote to stderr.
    pub(crate) fn finish(mut self) -> (Option<std::process::ExitStatus>, String) {
        if let Some(pid) = self.inner {
            let _ = kill(pid, Signal::SIGKILL);
            let until = Instant::now() + Duration::from_secs(5);
            while Instant::now() < until {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let pgid = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(pgid, Signal::SIGKILL);
        let status = self.child.wait().ok();
        let _ = killpg(pgid, Signal::SIGKILL);
        let err = self
            .stderr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (status, String::from_utf8_lossy(&err).trim().to_string())
    }

    /// Stderr so far (bwrap's complaints, Python's start-up errors).
    pub(crate) fn stderr_now(&self) -> String {
        let err = self
            .stderr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&err).trim().to_string()
    }
}
