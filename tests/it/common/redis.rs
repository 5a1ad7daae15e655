//! A real redis-server (Debian's) on a free loopback port, without persistence, for the
//! registry's blob cache; with a password, or TLS on certificates the test makes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// How the test's redis differs from a plain one.
#[derive(Clone, Debug, Default)]
pub struct RedisSetup {
    pub password: Option<String>,
    /// TLS only (`--port 0 --tls-port`), on a CA and server certificate made for it.
    pub tls: bool,
    /// With TLS: clients must show a certificate the CA signed (`client.pem`, `client.key`).
    pub client_certs: bool,
}

/// A running redis-server, killed when dropped.
pub struct Redis {
    pub port: u16,
    pub setup: RedisSetup,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, both signed by it
/// (openssl), in `dir`: `ca.pem`, `server.pem`, `server.key`, `client.pem`, `client.key`.
fn make_certs(dir: &Path) {
    let run = |args: &str| {
        let args: Vec<&str> = args.split(' ').collect();
        let out = Command::new("openssl").args(&args).current_dir(dir).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run("req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=regsweep-test-CA");
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    for name in ["server", "client"] {
        let cn = if name == "server" { "127.0.0.1" } else { "regsweep" };
        run(&format!("req -newkey rsa:2048 -nodes -keyout {name}.key -out {name}.csr -subj /CN={cn}"));
        run(&format!(
            "x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out {name}.pem -days 2 -extfile ext.cnf"
        ));
    }
}

impl Redis {
    pub fn start(setup: RedisSetup) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        if setup.tls {
            make_certs(dir.path());
        }
        let mut r = Redis { port: free_port(), setup, child: None, dir };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]).arg("--dir").arg(self.dir.path());
        if self.setup.tls {
            let p = |f: &str| self.dir.path().join(f);
            cmd.args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(p("server.pem"))
                .arg("--tls-key-file")
                .arg(p("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(p("ca.pem"))
                .args(["--tls-auth-clients", if self.setup.client_certs { "yes" } else { "no" }]);
        } else {
            cmd.args(["--port", &self.port.to_string()]);
        }
        if let Some(pw) = &self.setup.password {
            cmd.args(["--requirepass", pw]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("redis-server cannot start ({e}): tests/run.sh installs it"));
        self.child = Some(child);
        let start = Instant::now();
        while self.cli(&["PING"]).map(|o| o.trim() != "PONG").unwrap_or(true) {
            assert!(start.elapsed() < Duration::from_secs(10), "redis-server did not start");
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// The CA the server's certificate is signed by (TLS).
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A client certificate and its key, signed by the CA.
    pub fn client_cert(&self) -> (PathBuf, PathBuf) {
        (self.dir.path().join("client.pem"), self.dir.path().join("client.key"))
    }

    /// `redis-cli` with these arguments on database `db` 0; its output, or `None` when it
    /// failed.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        self.cli_db(0, args)
    }

    pub fn cli_db(&self, db: u32, args: &[&str]) -> Option<String> {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-n", &db.to_string()]);
        if self.setup.tls {
            cmd.arg("--tls").arg("--cacert").arg(self.ca());
            if self.setup.client_certs {
                let (cert, key) = self.client_cert();
                cmd.arg("--cert").arg(cert).arg("--key").arg(key);
            }
        }
        if let Some(pw) = &self.setup.password {
            cmd.env("REDISCLI_AUTH", pw);
        }
        let out = cmd.args(args).stderr(Stdio::null()).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && !text.starts_with("ERR") && !text.starts_with("NOAUTH")).then_some(text)
    }

    /// Every key of database `db`.
    pub fn keys(&self, db: u32) -> Vec<String> {
        let out = self.cli_db(db, &["--scan"]).unwrap_or_default();
        let mut keys: Vec<String> = out.lines().map(String::from).collect();
        keys.sort();
        keys
    }

    /// Kills it (SIGKILL): the cache is gone, nothing answers on its port.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
