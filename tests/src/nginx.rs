//! A real nginx in front of a test server, configured with the README's snippet.
//!
//! [`executable`] finds nginx (`SOCKETGRAM_TEST_NGINX`, Debian's `/usr/sbin/nginx`, or `nginx`
//! on `PATH`); without it the tests that need it skip, except under `CI=true`, where they
//! fail ([`crate::service_missing`]). [`readme_snippet`] takes the `map` and `location` blocks
//! out of the README's "Behind a reverse proxy" section, so the documented configuration is
//! the tested one. [`Nginx`] runs one nginx process with everything it writes (pid, logs,
//! temporary files) in a temporary directory, listening on a free loopback port, and kills it
//! when dropped.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// The upstream the README's snippet proxies to (socketgram's default web port on loopback);
/// tests put their server's address in its place.
pub const README_UPSTREAM: &str = "http://127.0.0.1:3000";

/// nginx, or `None` (after printing `SKIPPED`; panics under `CI=true`) when it is not here.
pub fn executable() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SOCKETGRAM_TEST_NGINX") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Some(path);
        }
        crate::service_missing(
            "nginx",
            &format!("SOCKETGRAM_TEST_NGINX={path:?} is not a file"),
        );
        return None;
    }
    let debian = PathBuf::from("/usr/sbin/nginx");
    if debian.is_file() {
        return Some(debian);
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("nginx"))
            .find(|candidate| candidate.is_file())
    });
    if on_path.is_none() {
        crate::service_missing(
            "nginx",
            "no /usr/sbin/nginx or `nginx` on PATH (Debian: apt-get install nginx)",
        );
    }
    on_path
}

/// The README's nginx configuration for Socketgram at `upstream`.
#[derive(Clone, Debug)]
pub struct Snippet {
    /// `map $http_upgrade $connection_upgrade { .. }`, for the `http` block.
    pub map: String,
    /// `location / { .. }`, for a `server` block.
    pub location: String,
}

/// The `map` and `location` blocks of the README's ```` ```nginx ```` example in the section
/// "Behind a reverse proxy", proxying to `upstream` instead of [`README_UPSTREAM`]. Panics
/// when the README no longer has them: the documentation and this test must change together.
pub fn readme_snippet(upstream: SocketAddr) -> Snippet {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&path).expect("read README.md");
    snippet_of(&readme, upstream)
}

fn snippet_of(readme: &str, upstream: SocketAddr) -> Snippet {
    let nginx = nginx_example(readme, "Behind a reverse proxy");
    let map = block(nginx, "map $http_upgrade $connection_upgrade");
    let location = block(nginx, "location / {");
    assert!(
        location.contains(README_UPSTREAM),
        "the README's location proxies to {README_UPSTREAM}: {location}"
    );
    Snippet {
        map: map.to_owned(),
        location: location.replace(README_UPSTREAM, &format!("http://{upstream}")),
    }
}

/// The README's scaled-out deployment behind nginx: the `upstream` of its section "Scaling
/// out" with the edges at `edges`, and the `location` of "Behind a reverse proxy" proxying to
/// that upstream. Panics when the README no longer has them.
pub fn readme_cluster_snippet(edges: &[SocketAddr]) -> Snippet {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&path).expect("read README.md");
    let nginx = nginx_example(&readme, "Scaling out");
    let upstream = block(nginx, "upstream socketgram_edges {");
    assert!(
        upstream.contains("ip_hash;"),
        "long polling needs sticky sessions: {upstream}"
    );
    let servers: String = edges
        .iter()
        .map(|edge| format!("    server {edge};\n"))
        .collect();
    let upstream: String = upstream
        .lines()
        .filter(|line| !line.trim_start().starts_with("server "))
        .map(|line| match line.trim() {
            "}" => format!("{servers}}}\n"),
            _ => format!("{line}\n"),
        })
        .collect();
    let single = snippet_of(&readme, "127.0.0.1:1".parse().expect("address"));
    Snippet {
        map: format!("{}\n{upstream}", single.map),
        location: single
            .location
            .replace("http://127.0.0.1:1", "http://socketgram_edges"),
    }
}

/// The first ```` ```nginx ```` example of the README's section `## <title>...`.
fn nginx_example<'a>(readme: &'a str, title: &str) -> &'a str {
    readme
        .split_once(&format!("## {title}"))
        .unwrap_or_else(|| panic!("README has a section {title:?}"))
        .1
        .split_once("```nginx\n")
        .unwrap_or_else(|| panic!("the section {title:?} has an ```nginx example"))
        .1
        .split_once("\n```")
        .expect("the nginx example ends")
        .0
}

/// The block of `text` that starts with `start`, through its matching `}` (nginx
/// configuration: braces nest, `#` comments run to the end of the line).
fn block<'a>(text: &'a str, start: &str) -> &'a str {
    let at = text
        .find(start)
        .unwrap_or_else(|| panic!("the README's nginx example has `{start}`"));
    let mut depth = 0u32;
    let mut comment = false;
    for (i, c) in text[at..].char_indices() {
        match c {
            '#' => comment = true,
            '\n' => comment = false,
            '{' if !comment => depth += 1,
            '}' if !comment => {
                depth -= 1;
                if depth == 0 {
                    return &text[at..at + i + 1];
                }
            }
            _ => {}
        }
    }
    panic!("`{start}` in the README's nginx example is not closed");
}

/// A running nginx; killed when dropped.
pub struct Nginx {
    _child: Child,
    /// Where it listens (loopback).
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

/// Tries with another port when the one picked was taken in between.
const START_ATTEMPTS: usize = 5;

impl Nginx {
    /// Starts `exe` with `http` inside its `http` block and `server` inside one `server`
    /// block listening on a free loopback port, and waits until it listens.
    pub async fn start(exe: &Path, http: &str, server: &str) -> Self {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(exe, http, server).await {
                Ok(nginx) => return nginx,
                // Another process took the port between our probe and nginx's bind.
                Err(log) if log.contains("Address already in use") => failures.push(log),
                Err(log) => panic!("nginx did not start:\n{log}"),
            }
        }
        panic!("nginx found no free port: {failures:#?}");
    }

    /// The base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn try_start(exe: &Path, http: &str, server: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let addr = free_port();
        let d = dir.path().display();
        // `master_process off`: one process, so killing it leaves no orphaned workers.
        // Everything nginx writes stays in `dir`: the Debian defaults (/var/log/nginx,
        // /var/lib/nginx) may not be writable, and parallel tests must not share them.
        let conf = format!(
            "daemon off;\nmaster_process off;\nerror_log stderr notice;\npid {d}/nginx.pid;\n\
             worker_rlimit_nofile 8192;\nevents {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/client_body;\n  \
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{http}\n  \
             server {{\n    listen {addr};\n{server}\n  }}\n}}\n"
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).expect("write nginx.conf");
        let mut child = Command::new(exe)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&path)
            // Errors before the configuration is read go here too, not to /var/log/nginx.
            .args(["-e", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start nginx");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        // nginx prints its OS status (the `getrlimit(RLIMIT_NOFILE)` line, last) right after
        // it opened its listening sockets: from then on connections wait in the backlog.
        let ready = tokio::time::timeout(Duration::from_secs(20), async {
            let mut log = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                log.push_str(&line);
                log.push('\n');
                if line.contains("getrlimit(RLIMIT_NOFILE)") {
                    return Ok(());
                }
            }
            Err(log)
        })
        .await
        .unwrap_or_else(|_| Err("nginx did not get ready within 20 s".to_owned()));
        ready?;
        // Keep relaying its log (errors of the run show in the test's output).
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[nginx] {line}");
            }
        });
        Ok(Self {
            _child: child,
            addr,
            _dir: dir,
        })
    }
}

/// A loopback port free a moment ago.
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_snippet_is_found_and_pointed_at_the_upstream() {
        let upstream: SocketAddr = "127.0.0.1:4321".parse().unwrap();
        let s = readme_snippet(upstream);
        assert!(s.map.starts_with("map $http_upgrade $connection_upgrade {"));
        assert!(s.map.ends_with('}'));
        assert!(s.location.starts_with("location / {"));
        assert!(s.location.contains("proxy_pass http://127.0.0.1:4321;"));
        assert!(s.location.contains("$proxy_add_x_forwarded_for"));
        assert!(!s.location.contains(README_UPSTREAM));
    }

    #[test]
    fn blocks_nest_and_skip_comments() {
        let text = "a\nlocation / { # a } in a comment\n  if ($x) { y; }\n}\nafter { }";
        assert_eq!(
            block(text, "location / {"),
            "location / { # a } in a comment\n  if ($x) { y; }\n}"
        );
    }
}
