//! Node.js for the real-client tests: the `node` executable and the npm packages of `tests/js`
//! (the official `socket.io-client`, and the `socket.io` server of the legacy stand-in, pinned
//! by `tests/js/package-lock.json`).
//!
//! [`node`] finds Node.js once per test process and, when `tests/js/node_modules` is missing,
//! runs `npm ci` there once (a `OnceLock`, so tests running in parallel never install at the
//! same time). Without Node.js the tests that need it skip, except under `CI=true`, where they
//! fail ([`crate::service_missing`]).

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

/// Where the test clients' npm packages live.
pub fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// Node.js, ready to run the scripts of [`js_dir`].
#[derive(Debug)]
pub struct Node {
    /// The `node` executable.
    pub exe: PathBuf,
    /// `tests/js`, with its `node_modules` installed.
    pub js: PathBuf,
}

impl Node {
    /// A command running `script` (a path relative to [`js_dir`]) under Node.js.
    pub fn script(&self, script: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.exe);
        command.arg(self.js.join(script)).current_dir(&self.js);
        command
    }
}

static NODE: OnceLock<Result<Node, String>> = OnceLock::new();

/// Node.js with the test packages installed; `None` (after printing `SKIPPED`) when Node.js
/// or the packages are not available outside CI. Under `CI=true` that panics instead.
pub fn node() -> Option<&'static Node> {
    match NODE.get_or_init(prepare) {
        Ok(node) => Some(node),
        Err(why) => {
            crate::service_missing("Node.js with the tests/js packages", why);
            None
        }
    }
}

fn prepare() -> Result<Node, String> {
    let exe = find_node().ok_or_else(|| {
        "no `node` on PATH (or SOCKETGRAM_TEST_NODE); install Node.js 18 or newer".to_owned()
    })?;
    let js = js_dir();
    // Every package the scripts import: a checkout installed before one was added installs again.
    let installed = [
        "socket.io-client",
        "socket.io",
        "playwright-core",
        "axe-core",
    ]
    .iter()
    .all(|p| {
        js.join("node_modules")
            .join(p)
            .join("package.json")
            .exists()
    });
    if !installed {
        let npm = exe.with_file_name("npm");
        let npm = if npm.exists() {
            npm
        } else {
            PathBuf::from("npm")
        };
        let status = Command::new(&npm)
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&js)
            .status()
            .map_err(|e| format!("cannot run npm ({e})"))?;
        if !status.success() {
            return Err(format!(
                "`npm ci` in {} failed ({status}): the npm registry may be unreachable",
                js.display()
            ));
        }
    }
    Ok(Node { exe, js })
}

/// `SOCKETGRAM_TEST_NODE`, else the first `node` (or Debian's `nodejs`) on `PATH`.
fn find_node() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SOCKETGRAM_TEST_NODE") {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| [dir.join("node"), dir.join("nodejs")])
        .find(|candidate| candidate.is_file())
}

/// Debian's Chromium, which the browser tests drive through playwright-core.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Node.js with playwright-core and Chromium, for a browser test; `None` (after
/// [`crate::service_missing`]) when one is missing.
pub async fn browser() -> Option<&'static Node> {
    if !Path::new(CHROMIUM).exists() {
        crate::service_missing("Chromium", "no /usr/bin/chromium: apt-get install chromium");
        return None;
    }
    let node = tokio::task::spawn_blocking(node)
        .await
        .expect("find Node.js")?;
    for package in ["playwright-core", "axe-core"] {
        if !node
            .js
            .join("node_modules")
            .join(package)
            .join("package.json")
            .exists()
        {
            crate::service_missing(
                package,
                "tests/js/node_modules lacks it: run `npm ci` in tests/js",
            );
            return None;
        }
    }
    Some(node)
}

/// A script the test takes turns with, a line at a time: the script says where it is on its
/// stdout, the test answers on its stdin (no sleeps on either side).
pub struct Dialogue {
    name: String,
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    /// The longest the script may take to say its next line.
    step: std::time::Duration,
}

impl Dialogue {
    /// Starts `command` (a [`Node::script`]) with its stdin and stdout piped to the test.
    pub fn start(
        name: &str,
        mut command: tokio::process::Command,
        step: std::time::Duration,
    ) -> Self {
        use std::process::Stdio;
        use tokio::io::AsyncBufReadExt as _;
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} under Node.js: {e}"));
        let stdin = child.stdin.take().expect("the script's stdin");
        let lines =
            tokio::io::BufReader::new(child.stdout.take().expect("the script's stdout")).lines();
        Self {
            name: name.to_owned(),
            child,
            stdin,
            lines,
            step,
        }
    }

    /// Tells the script `line`.
    pub async fn tell(&mut self, line: &str) {
        use tokio::io::AsyncWriteExt as _;
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to the script");
        self.stdin.flush().await.expect("flush the script's stdin");
    }

    /// Waits for the script's next line, which must be `word`.
    pub async fn expect(&mut self, word: &str) {
        let name = &self.name;
        let line = tokio::time::timeout(self.step, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{name} did not say {word:?} in time"))
            .expect("read the script's stdout");
        match line {
            Some(line) if line.trim() == word => {}
            Some(other) => panic!("{name} said {other:?}, expected {word:?}"),
            None => {
                let status = self.child.wait().await.expect("wait for the script");
                panic!("{name} ended ({status}) before saying {word:?}; its stderr above says why");
            }
        }
    }

    /// Waits for the script to exit; whether it succeeded.
    pub async fn finished(mut self) -> bool {
        let name = &self.name;
        tokio::time::timeout(self.step, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{name} did not exit"))
            .expect("wait for the script")
            .success()
    }
}
