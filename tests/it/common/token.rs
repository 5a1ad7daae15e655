//! A small token issuer for the registry's `auth.token`: it checks basic credentials and signs
//! RS256 JWTs (with `openssl`) with the key of the certificate the registry trusts
//! (`rootcertbundle`), carrying the certificate in `x5c`. The first token it gives for each scope
//! can be already expired, to prove that regsweep asks again. [`READER`] gets no `delete`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

pub const SERVICE: &str = "regsweep-test";
pub const ISSUER: &str = "regsweep-test-issuer";

pub struct Issuer {
    pub realm: String,
    pub cert: PathBuf,
    /// Tokens handed out, per scope.
    pub issued: Arc<Mutex<HashMap<String, usize>>>,
}

/// A self-signed certificate and key for 127.0.0.1 in `dir`; `ca`: with `openssl req -x509`'s
/// default `CA:TRUE`, which rustls refuses as a server's own certificate.
pub fn self_signed(dir: &Path, name: &str, ca: bool) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    let st = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(if ca { &[][..] } else { &["-addext", "basicConstraints=critical,CA:FALSE"][..] })
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(st.status.success(), "openssl: {}", String::from_utf8_lossy(&st.stderr));
    (cert, key)
}

fn der_base64(cert: &Path) -> String {
    let out = Command::new("openssl").args(["x509", "-outform", "DER", "-in"]).arg(cert).output().unwrap();
    assert!(out.status.success());
    STANDARD.encode(out.stdout)
}

fn sign(key: &Path, input: &str) -> String {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    URL_SAFE_NO_PAD.encode(out.stdout)
}

/// A user whose tokens never grant `delete`.
pub const READER: &str = "reader";
pub const READER_PASSWORD: &str = "reader-pw";

fn access(scope: &str, read_only: bool) -> serde_json::Value {
    let (kind, rest) = scope.split_once(':').unwrap_or((scope, ""));
    let (name, actions) = rest.rsplit_once(':').unwrap_or((rest, ""));
    let actions: Vec<&str> = actions.split(',').filter(|a| !read_only || *a != "delete").collect();
    serde_json::json!({"type": kind, "name": name, "actions": actions})
}

fn query_values(query: &str, key: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| {
            let mut out = Vec::new();
            let b = v.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%' && i + 2 < b.len() {
                    out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap());
                    i += 3;
                } else {
                    out.push(if b[i] == b'+' { b' ' } else { b[i] });
                    i += 1;
                }
            }
            String::from_utf8(out).unwrap()
        })
        .collect()
}

impl Issuer {
    /// Starts the issuer; `user:password` are the only credentials it accepts.
    pub fn start(dir: &Path, user: &str, password: &str, expire_first: bool) -> Issuer {
        let (cert, key) = self_signed(dir, "token", true);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let realm = format!("http://127.0.0.1:{}/token", listener.local_addr().unwrap().port());
        let issued: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let x5c = der_base64(&cert);
        let expected = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
        let reader_auth = format!("Basic {}", STANDARD.encode(format!("{READER}:{READER_PASSWORD}")));
        let counts = issued.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let (mut authorized, mut read_only) = (false, false);
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':')
                        && k.eq_ignore_ascii_case("authorization")
                    {
                        authorized = v.trim() == expected || v.trim() == reader_auth;
                        read_only = v.trim() == reader_auth;
                    }
                }
                if !authorized {
                    let _ =
                        conn.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    continue;
                }
                let query = target.split_once('?').map(|x| x.1).unwrap_or("");
                let scopes = query_values(query, "scope");
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
                let first = {
                    let mut c = counts.lock().unwrap();
                    let n = c.entry(scopes.join(" ")).or_insert(0);
                    *n += 1;
                    *n == 1
                };
                let exp = if expire_first && first { now - 7200 } else { now + 300 };
                let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
                let claims = serde_json::json!({
                    "iss": ISSUER, "sub": "alice", "aud": SERVICE, "exp": exp, "nbf": exp - 600, "iat": exp - 600,
                    "jti": format!("{now}-{}", scopes.join(" ")),
                    "access": scopes.iter().map(|s| access(s, read_only)).collect::<Vec<_>>(),
                });
                let input = format!(
                    "{}.{}",
                    URL_SAFE_NO_PAD.encode(header.to_string()),
                    URL_SAFE_NO_PAD.encode(claims.to_string())
                );
                let token = format!("{input}.{}", sign(&key, &input));
                let body = serde_json::json!({"token": token, "expires_in": 300}).to_string();
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Issuer { realm, cert, issued }
    }

    /// The registry's `auth:` section for this issuer.
    pub fn auth_yaml(&self) -> String {
        format!(
            "auth:\n  token: {{realm: \"{}\", service: {SERVICE}, issuer: {ISSUER}, rootcertbundle: {}}}",
            self.realm,
            self.cert.display()
        )
    }
}
