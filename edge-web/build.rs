//! Fetches the official Socket.IO v4 browser client from the npm registry, at the version
//! pinned in `js/package-lock.json`, and hands it to the crate (served at
//! `/socket.io/socket.io.js`, as a Node.js Socket.IO server does). Nothing is copied into the
//! repository by hand: `npm ci` installs exactly the locked package into the build directory.

use std::{env, fs, path::PathBuf, process::Command};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("out dir"));
    let js = manifest.join("js");
    for file in ["package.json", "package-lock.json"] {
        println!("cargo:rerun-if-changed=js/{file}");
    }
    let work = out.join("npm");
    fs::create_dir_all(&work).expect("create npm dir");
    let lock = fs::read(js.join("package-lock.json")).expect("js/package-lock.json");
    let installed_lock = work.join("package-lock.json");
    let dist = work.join("node_modules/socket.io-client/dist");
    let up_to_date = fs::read(&installed_lock).is_ok_and(|l| l == lock) && dist.exists();
    if !up_to_date {
        fs::copy(js.join("package.json"), work.join("package.json")).expect("copy package.json");
        fs::write(&installed_lock, &lock).expect("copy package-lock.json");
        let status = Command::new("npm")
            .args([
                "ci",
                "--no-audit",
                "--no-fund",
                "--ignore-scripts",
                "--loglevel=error",
            ])
            .current_dir(&work)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => panic!(
                "`npm ci` failed ({s}) fetching socket.io-client from the npm registry; \
                 the web edge serves that official browser client"
            ),
            Err(e) => panic!(
                "cannot run npm ({e}): Node.js and npm are needed at build time to fetch the \
                 official Socket.IO browser client (see README)"
            ),
        }
    }
    for file in ["socket.io.js", "socket.io.min.js"] {
        fs::copy(dist.join(file), out.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}
