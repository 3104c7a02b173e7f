//! Adversarial programs against the HumanEval+ grader. Each attack is written so that it
//! *passes* its task if it succeeds and fails otherwise, so "graded as not passing" means
//! "contained"; each test also checks the host afterwards: no file appeared outside the
//! sandbox, no process of the sandbox is left, no connection reached a loopback listener, no
//! secret of the grader's environment reached the program. The tests run one after another
//! (a lock), so the process check sees only their own sandboxes.
//!
//! The environment check needs a secret in this process's environment: the test re-runs this
//! binary with `HIERAMAS_TEST_SECRET` set (setting it in-process would need `unsafe`).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use hieramas_tasks::data::DataDir;
use hieramas_tasks::humaneval::{Grader, Isolation, SandboxOptions, default_cache_dir};

static LOCK: Mutex<()> = Mutex::new(());

fn grader() -> Option<&'static Grader> {
    static G: OnceLock<Option<Grader>> = OnceLock::new();
    G.get_or_init(|| {
        let dir = DataDir::for_tests()?;
        let g = Grader::new(
            dir.humaneval_plus().unwrap(),
            default_cache_dir(),
            SandboxOptions {
                address_space_bytes: 1 << 30,
                parallelism: 2,
                ..SandboxOptions::default()
            },
        );
        // Fails closed: without a working bubblewrap these tests fail (they never skip).
        assert_eq!(g.isolation().unwrap(), Isolation::Bubblewrap);
        Some(g)
    })
    .as_ref()
}

/// HumanEval/13 (`greatest_common_divisor`): right only when `escaped` is true.
fn attack(prelude: &str) -> String {
    format!(
        "escaped = False\ntry:\n{}\nexcept BaseException:\n    pass\n\ndef greatest_common_divisor(a: int, b: int) -> int:\n    if not escaped:\n        return -1\n    while b:\n        a, b = b, a % b\n    return a\n",
        indent(prelude)
    )
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

fn marker(what: &str) -> String {
    format!(
        "hieramas-escape-{what}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// Processes of the sandboxes: the runner's text is in their command line (forks keep it),
/// exec'd helpers carry "hieramas-escape", and as root they run as uids from 0x7e000000.
/// Processes of a sandbox still on the host, after giving the kernel up to 5 s to finish tearing
/// down killed namespaces (a killed process can stay visible for a moment on a loaded machine).
fn sandbox_processes() -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let found = sandbox_processes_now();
        if found.is_empty() || Instant::now() > until {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sandbox_processes_now() -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let path = entry.path();
        let Ok(cmd) = std::fs::read(path.join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let uid = std::fs::read_to_string(path.join("status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|l| l.split_whitespace().next().map(str::to_string))
            })
            .and_then(|u| u.parse::<u32>().ok())
            .unwrap_or(0);
        if cmd.contains("hieramas HumanEval+ runner")
            || cmd.contains("hieramas-escape")
            || (0x7e00_0000..0x7f00_0000).contains(&uid)
        {
            found.push(format!(
                "{} (uid {uid}): {}",
                entry.file_name().to_string_lossy(),
                &cmd[..cmd.len().min(80)]
            ));
        }
    }
    found
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Grades `code` on `task`, asserts it does not pass, ends in time and leaves no process.
fn contained(name: &str, task: &str, code: &str) -> String {
    let g = grader().unwrap();
    let started = Instant::now();
    let r = g.grade(task, code).unwrap();
    let took = started.elapsed();
    assert!(!r.plus_pass(), "{name}: not contained: {r:?}");
    assert!(!r.base_pass(), "{name}: passed the base inputs: {r:?}");
    assert!(r.sandboxed);
    assert!(took < Duration::from_secs(40), "{name}: took {took:?}");
    let left = sandbox_processes();
    assert!(left.is_empty(), "{name}: left running: {left:?}");
    let e = r.first_error().unwrap_or_default();
    eprintln!("{name}: contained in {took:.2?}: {e}");
    e
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

#[test]
fn forged_equality_fails() {
    let _l = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(g) = grader() else { return };
    let p = |id: &str| g.task(id).unwrap().prompt.clone();
    let liar = "class Liar:\n    def __eq__(self, other): return True\n    def __ne__(self, other): return False\n    __hash__ = object.__hash__\n";
    let cases = [
        (
            "object whose __eq__ is always True",
            "HumanEval/13",
            format!("{liar}\n{}    return Liar()\n", p("HumanEval/13")),
        ),
        (
            "int subclass with a forged __eq__",
            "HumanEval/13",
            format!(
                "class I(int):\n    def __eq__(self, o): return True\n    __hash__ = int.__hash__\n{}    return I(-1)\n",
                p("HumanEval/13")
            ),
        ),
        (
            "bool-like int subclass",
            "HumanEval/0",
            format!(
                "class B(int):\n    def __eq__(self, o): return True\n    def __bool__(self): return True\n    __hash__ = int.__hash__\n{}    return B(0)\n",
                p("HumanEval/0")
            ),
        ),
        (
            "str subclass with a forged __eq__",
            "HumanEval/28",
            format!(
                "class S(str):\n    def __eq__(self, o): return True\n    __hash__ = str.__hash__\n{}    return S('nope')\n",
                p("HumanEval/28")
            ),
        ),
        (
            "list subclass with a forged __eq__",
            "HumanEval/29",
            format!(
                "class L(list):\n    def __eq__(self, o): return True\n{}    return L()\n",
                p("HumanEval/29")
            ),
        ),
        (
            "float subclass with forged __eq__ and __sub__",
            "HumanEval/2",
            format!(
                "class F(float):\n    def __eq__(self, o): return True\n    def __sub__(self, o): return 0.0\n    def __rsub__(self, o): return 0.0\n    def __abs__(self): return 0.0\n    __hash__ = float.__hash__\n{}    return F(7.0)\n",
                p("HumanEval/2")
            ),
        ),
        (
            "list holding a liar",
            "HumanEval/29",
            format!("{liar}\n{}    return [Liar()]\n", p("HumanEval/29")),
        ),
        (
            "tuple-for-list",
            "HumanEval/29",
            format!(
                "{}    return tuple(s for s in strings if s.startswith(prefix))\n",
                p("HumanEval/29")
            ),
        ),
        (
            "numpy-free float liar for find_zero",
            "HumanEval/32",
            format!("{liar}\n{}    return Liar()\n", p("HumanEval/32")),
        ),
    ];
    for (name, task, code) in cases {
        contained(name, task, &code);
    }
}

#[test]
fn expected_outputs_and_the_channel_cannot_be_reached() {
    let _l = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(g) = grader() else { return };
    let gcd = |cond: &str| attack(cond);
    let cases = [
        // The expected outputs are not in the process: nothing to find in frames or the heap.
        (
            "frame inspection",
            gcd(
                "import sys\nf = sys._getframe()\nwhile f is not None:\n    for k, v in f.f_locals.items():\n        if 'expect' in str(k) or 'outs' in str(k):\n            escaped = True\n    f = f.f_back",
            ),
        ),
        (
            "gc.get_objects()",
            gcd(
                "import gc\nfor o in gc.get_objects():\n    if isinstance(o, dict) and ('expected' in o or 'plus' in o or 'outputs' in o):\n        escaped = True",
            ),
        ),
        // Audit hooks are gone, and disabling anything changes no verdict.
        (
            "audit-hook tampering",
            gcd(
                "import sys, gc\nsys.addaudithook(lambda *a: None)\nfor o in gc.get_objects():\n    if callable(o) and getattr(o, '__name__', '') == 'hook':\n        o.__code__ = (lambda *a: None).__code__\nescaped = False",
            ),
        ),
    ];
    for (name, code) in &cases {
        contained(name, "HumanEval/13", code);
    }
    let p13 = g.task("HumanEval/13").unwrap().prompt.clone();
    let forged_line = r#"{"k": "out", "v": ["i", "0x1"], "t": 0.0}"#;
    let forgeries = [
        // Result lines and old-style verdicts printed on stdout and stderr are never read.
        (
            "forged lines on stdout",
            format!(
                "import sys\nfor _ in range(5000):\n    print({forged_line:?})\n    print('@@hieramas-0@@{{\"base\": {{\"status\": \"pass\"}}, \"plus\": {{\"status\": \"pass\"}}}}')\n    sys.stderr.write({forged_line:?} + '\\n')\n{p13}    return -1\n"
            ),
        ),
        // On the result channel: one output per input, in order; a guess is compared like any
        // output, and ending early is a failure.
        (
            "forged lines on the result fd",
            format!(
                "import os\nfor _ in range(100000):\n    os.write(3, b'{forged_line}\\n')\nos._exit(0)\n{p13}    return -1\n"
            ),
        ),
        (
            "truncated stream, then exit",
            format!(
                "import os\nos.write(3, b'{forged_line}\\n')\nos.close(3)\n{p13}    return 1\n"
            ),
        ),
        (
            "a digest where a value is expected",
            format!(
                "import os\nos.write(3, b'{{\"k\": \"out\", \"v\": [\"#\", \"{}\"], \"t\": 0}}\\n' * 20)\n{p13}    return -1\n",
                "0".repeat(64)
            ),
        ),
        (
            "garbage on the result fd",
            format!("import os\nos.write(3, b'\\x00' * 100000 + b'\\n')\n{p13}    return -1\n"),
        ),
        (
            "exit before any output",
            format!("import sys\nsys.exit(0)\n{p13}    return 1\n"),
        ),
    ];
    for (name, code) in &forgeries {
        contained(name, "HumanEval/13", code);
    }
}

/// Re-runs `test` in a child of this binary with a random secret in its environment.
fn with_secret(test: &str) -> Option<String> {
    if let Ok(s) = std::env::var("HIERAMAS_TEST_SECRET") {
        return Some(s);
    }
    let secret = marker("secret");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("HIERAMAS_TEST_SECRET", &secret)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{test} with a secret failed:\n{text}");
    assert!(text.contains("1 passed"), "{test} did not run:\n{text}");
    None
}

#[test]
fn files_environment_network_and_processes_are_out_of_reach() {
    let _l = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(secret) = with_secret("files_environment_network_and_processes_are_out_of_reach")
    else {
        return;
    };
    let Some(g) = grader() else { return };
    let me = std::process::id();
    let tmp = std::env::temp_dir();
    let cache = default_cache_dir();
    let index = g.index_path();
    // A file only the host's /tmp has: the sandbox's /tmp is its own.
    let sentinel = tmp.join(marker("sentinel"));
    std::fs::write(&sentinel, &secret).unwrap();
    let targets: Vec<PathBuf> = vec![
        tmp.join(marker("tmp")),
        home().join(marker("home")),
        cache.join(marker("cache")),
        repo().join(marker("repo")),
        repo().join("src").join(marker("src")),
    ];
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let s = |p: &Path| format!("{:?}", p.display().to_string());
    let mut attacks: Vec<(String, String)> = Vec::new();
    for t in &targets {
        let dir = s(t.parent().unwrap());
        let name = s(Path::new(t.file_name().unwrap()));
        // Inside, its own /tmp is writable: there, escaping means seeing the host's.
        let escaped = if t.starts_with(&tmp) {
            format!("import os\nescaped = os.path.exists({})", s(&sentinel))
        } else {
            "escaped = True".into()
        };
        attacks.push((
            format!("write {}", t.display()),
            format!("open({}, 'w').write('pwned')\n{escaped}", s(t)),
        ));
        attacks.push((
            format!("os.open with dir_fd into {}", t.parent().unwrap().display()),
            format!("import os\nd = os.open({dir}, os.O_RDONLY | os.O_DIRECTORY)\nfd = os.open({name}, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=d)\nos.write(fd, b'pwned')\nescaped = os.path.exists({})", s(&sentinel)),
        ));
    }
    let more: Vec<(&str, String)> = vec![
        ("see the host's /tmp", format!("escaped = open({}).read() == {secret:?}", s(&sentinel))),
        ("secret from os.environ", format!("import os\nescaped = {secret:?} in str(os.environ)")),
        ("secret from every /proc/*/environ", format!("import os\nfor p in os.listdir('/proc'):\n    try:\n        if {secret:?}.encode() in open('/proc/' + p + '/environ', 'rb').read(): escaped = True\n    except OSError: pass")),
        ("secret from the parent's /proc/<ppid>/environ", format!("import os\nescaped = {secret:?}.encode() in open('/proc/%d/environ' % os.getppid(), 'rb').read()")),
        ("secret from the grader's /proc/<pid>/environ", format!("escaped = {secret:?}.encode() in open('/proc/{me}/environ', 'rb').read()")),
        ("read the cache index", format!("escaped = len(open({}).read()) > 0", s(&index))),
        ("read the cache", format!("import os\nescaped = len(os.listdir({})) > 0", s(&cache))),
        ("read $HOME", format!("import os\nescaped = len(os.listdir({})) > 0", s(&home()))),
        ("read the repository", format!("escaped = len(open({}).read()) > 0", s(&repo().join("Cargo.toml")))),
        ("socket to a loopback listener", format!("import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\nescaped = True")),
        ("delete the cache", format!("import shutil\nshutil.rmtree({})\nescaped = True", s(&cache))),
        ("chmod system files", "import os\nos.chmod('/usr/bin/python3', 0o777)\nescaped = True".into()),
        ("delete the working directory", "import os, shutil\nshutil.rmtree(os.getcwd())\nos.chmod('/', 0o777)\nescaped = True".into()),
        ("fill the disk", "f = open('/tmp/big', 'wb')\nfor _ in range(4096):\n    f.write(b'x' * (1 << 20))\nf.close()\nescaped = True".into()),
        ("kill the grader", format!("import os\nos.kill({me}, 9)\nescaped = True")),
        ("kill the parent, then everyone", "import os, time\nos.kill(os.getppid(), 9)\ntry: os.kill(-1, 9)\nexcept OSError: pass\ntime.sleep(0.2)\nescaped = os.getppid() != 1".into()),
        ("new namespaces or mounts", "import os\nos.unshare(os.CLONE_NEWUSER)\nescaped = True".into()),
    ];
    attacks.extend(more.into_iter().map(|(n, c)| (n.to_string(), c)));
    // Controls: these attacks do escape in a plain python3 here, so "contained" is the
    // sandbox's doing.
    let controls = [
        "secret from os.environ",
        "socket to a loopback listener",
        "see the host's /tmp",
    ];
    for (name, prelude) in attacks
        .iter()
        .filter(|(n, _)| controls.contains(&n.as_str()))
    {
        let out = std::process::Command::new("/usr/bin/python3")
            .args(["-c", &format!("escaped = False\n{prelude}\nprint(escaped)")])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "True",
            "{name}: the control did not escape: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = listener.accept();
    }
    let python_mode = std::fs::metadata("/usr/bin/python3").unwrap();
    for (name, prelude) in &attacks {
        contained(name, "HumanEval/13", &attack(prelude));
        for t in &targets {
            assert!(!t.exists(), "{name}: {} appeared", t.display());
        }
        assert!(
            listener.accept().is_err(),
            "{name}: a connection reached the listener"
        );
        assert!(
            cache.exists() && index.exists(),
            "{name}: the cache is gone"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata("/usr/bin/python3")
            .unwrap()
            .permissions()
            .mode(),
        python_mode.permissions().mode()
    );
    let _ = std::fs::remove_file(&sentinel);
    // The grader still works.
    let t = g.task("HumanEval/13").unwrap();
    let ok = g
        .grade(
            "HumanEval/13",
            &format!("{}{}", t.prompt, t.canonical_solution),
        )
        .unwrap();
    assert!(ok.plus_pass(), "{ok:?}");
}

#[test]
fn resource_attacks_are_bounded() {
    let _l = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(_) = grader() else { return };
    let rss = rss_kib();
    let m = marker("daemon");
    let attacks: Vec<(&str, String)> = vec![
        ("infinite loop that swallows timeouts", "while True:\n    try:\n        while True: pass\n    except BaseException: pass".into()),
        ("fork bomb", "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass".into()),
        ("fork bomb with memory", "import os\nwhile True:\n    try:\n        os.fork()\n        x = bytearray(1 << 28)\n    except (OSError, MemoryError): pass".into()),
        ("fork through subprocess", format!("import subprocess\nsubprocess.run(['sh', '-c', 'sleep 100 & exec -a {m} sleep 100'])\nescaped = False")),
        ("ctypes fork", "import ctypes\nctypes.CDLL(None).fork()\nescaped = False".into()),
        ("memory bomb", "x = bytearray(8 << 30)\nescaped = True".into()),
        ("growing memory bomb", "xs = []\nwhile True:\n    xs.append(' ' * (1 << 24))".into()),
        ("1 GiB to stdout and stderr", "import os\nb = b'x' * (1 << 20)\nfor _ in range(512):\n    os.write(1, b)\n    os.write(2, b)".into()),
        ("1 GiB to the result fd", "import os\nb = b'x' * (1 << 20)\nfor _ in range(1024):\n    os.write(3, b)".into()),
        ("daemons that outlive the program", format!("import os, time\nfor _ in range(3):\n    if os.fork() == 0:\n        os.setsid()\n        if os.fork() == 0:\n            try: os.execv('/usr/bin/sleep', ['{m}', '1000'])\n            finally: os._exit(0)\n        os._exit(0)\ntime.sleep(0.2)\nescaped = False")),
        ("a thread that keeps running", "import threading, time\nthreading.Thread(target=lambda: time.sleep(1000)).start()\nescaped = False".into()),
    ];
    for (name, prelude) in &attacks {
        contained(name, "HumanEval/13", &attack(prelude));
    }
    let grown = rss_kib().saturating_sub(rss);
    assert!(grown < 200 << 10, "the grader grew by {grown} KiB");
}

#[test]
fn honest_programs_pass() {
    let _l = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(g) = grader() else { return };
    for id in [
        "HumanEval/13",
        "HumanEval/2",
        "HumanEval/32",
        "HumanEval/28",
        "HumanEval/130",
        "HumanEval/139",
    ] {
        let t = g.task(id).unwrap();
        let r = g
            .grade(id, &format!("{}{}", t.prompt, t.canonical_solution))
            .unwrap();
        assert!(r.plus_pass() && r.sandboxed, "{id}: {r:?}");
    }
    // A different float computation within atol passes; ints where floats are expected pass
    // where Python's == says equal.
    let t2 = g.task("HumanEval/2").unwrap();
    let r = g
        .grade(
            "HumanEval/2",
            &format!("{}    return number % 1.0 + 1e-9\n", t2.prompt),
        )
        .unwrap();
    assert!(r.plus_pass(), "{r:?}");
    // Writing to its own /tmp and printing is fine.
    let t13 = g.task("HumanEval/13").unwrap();
    let r = g
        .grade("HumanEval/13", &format!("import math, os\nopen('/tmp/x', 'w').write('ok')\nprint('hello')\n{}    return math.gcd(a, b)\n", t13.prompt))
        .unwrap();
    assert!(r.plus_pass(), "{r:?}");
    let left = sandbox_processes();
    assert!(left.is_empty(), "{left:?}");
}
