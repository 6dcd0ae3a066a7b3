//! A real OpenSSH server started by a test: `/usr/sbin/sshd` in the foreground on a free
//! loopback port, with a temporary host key, trusting one user CA (`TrustedUserCAKeys`),
//! mapping users to principals (`AuthorizedPrincipalsFile`) and reading a key revocation list
//! (`RevokedKeys`). Only certificates log in: `AuthorizedKeysFile none`, no passwords.
//!
//! The server logs to `sshd.log` in its directory ([`Sshd::log`]) and is killed, and its
//! directory removed, when the value is dropped. [`Sshd::login`] runs the real `ssh` client.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The sshd binary the tests start (it must be called by its absolute path).
pub const SSHD: &str = "/usr/sbin/sshd";
/// The ssh client the tests log in with.
pub const SSH: &str = "/usr/bin/ssh";
/// Generates the host key.
pub const SSH_KEYGEN: &str = "/usr/bin/ssh-keygen";

/// A running sshd; killed on drop.
pub struct Sshd {
    /// The loopback port it listens on.
    pub port: u16,
    dir: PathBuf,
    child: Child,
}

impl Sshd {
    /// Starts sshd trusting the user CA `ca_public_key` (an OpenSSH public key line), with
    /// `principals`: for each local user, the certificate principals it accepts. Records a
    /// skip and returns `None` when sshd, ssh or ssh-keygen is missing; panics, with sshd's
    /// log, when it is present but does not start.
    pub fn start(test: &str, ca_public_key: &str, principals: &[(&str, &[&str])]) -> Option<Sshd> {
        for tool in [SSHD, SSH, SSH_KEYGEN] {
            if !Path::new(tool).exists() {
                crate::skip(
                    test,
                    &format!("{tool} is not installed (openssh-server/client)"),
                );
                return None;
            }
        }
        // sshd refuses to start without its privilege separation directory.
        if !Path::new("/run/sshd").exists()
            && let Err(e) = fs::create_dir_all("/run/sshd")
        {
            crate::skip(test, &format!("cannot create /run/sshd for sshd: {e}"));
            return None;
        }

        let dir = std::env::temp_dir().join(format!(
            "bg-sshd-{}-{:x}",
            std::process::id(),
            crate::rand_suffix()
        ));
        fs::create_dir_all(dir.join("principals")).expect("create the sshd directory");
        let host_key = dir.join("host_ed25519");
        let keygen = Command::new(SSH_KEYGEN)
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "bg-test-host", "-f"])
            .arg(&host_key)
            .output()
            .expect("run ssh-keygen");
        assert!(
            keygen.status.success(),
            "{test}: ssh-keygen failed: {}",
            String::from_utf8_lossy(&keygen.stderr)
        );
        fs::write(dir.join("ca.pub"), format!("{}\n", ca_public_key.trim()))
            .expect("write the CA key");
        for (user, names) in principals {
            fs::write(dir.join("principals").join(user), names.join("\n") + "\n")
                .expect("write a principals file");
        }
        // An empty file revokes nothing (sshd reads it as an empty key list); a missing one
        // would make sshd refuse every key.
        fs::write(dir.join("revoked.krl"), b"").expect("create the KRL file");

        let port = free_port();
        let config = format!(
            "ListenAddress 127.0.0.1:{port}\n\
             HostKey {host}\n\
             PidFile {dir}/sshd.pid\n\
             TrustedUserCAKeys {dir}/ca.pub\n\
             AuthorizedPrincipalsFile {dir}/principals/%u\n\
             AuthorizedKeysFile none\n\
             RevokedKeys {dir}/revoked.krl\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\n\
             UsePAM no\n\
             StrictModes no\n\
             LogLevel VERBOSE\n",
            host = host_key.display(),
            dir = dir.display(),
        );
        // OpenSSH 9.8 and later penalise addresses that fail to log in, which the tests do
        // on purpose; older versions do not know the option and refuse it.
        let penalties = format!("{config}PerSourcePenalties no\n");
        fs::write(dir.join("sshd_config"), &penalties).expect("write sshd_config");
        let accepted = Command::new(SSHD)
            .arg("-t")
            .arg("-f")
            .arg(dir.join("sshd_config"))
            .output()
            .expect("run sshd -t");
        if !accepted.status.success() {
            fs::write(dir.join("sshd_config"), &config).expect("write sshd_config");
        }

        let log = fs::File::create(dir.join("sshd.log")).expect("create sshd.log");
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log)
            .spawn()
            .expect("start sshd");
        let mut sshd = Sshd { port, dir, child };
        sshd.wait_ready(test);
        Some(sshd)
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's temporary directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file sshd reads as `RevokedKeys` (empty at start).
    pub fn krl_path(&self) -> PathBuf {
        self.dir.join("revoked.krl")
    }

    /// Everything sshd logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    /// Runs `ssh … USER@127.0.0.1 true` with the private key `key` and the certificate
    /// `certificate`, ignoring any user configuration, agent and known hosts.
    pub fn login(&self, user: &str, key: &Path, certificate: &Path) -> Output {
        Command::new(SSH)
            .args(["-F", "/dev/null", "-i"])
            .arg(key)
            .arg("-o")
            .arg(format!("CertificateFile={}", certificate.display()))
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "IdentityAgent=none",
                "-o",
                "BatchMode=yes",
                "-o",
                "PasswordAuthentication=no",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "ConnectTimeout=5",
                "-o",
                "LogLevel=ERROR",
                "-p",
            ])
            .arg(self.port.to_string())
            .arg(format!("{user}@127.0.0.1"))
            .arg("true")
            .stdin(Stdio::null())
            .output()
            .expect("run ssh")
    }

    /// Waits until sshd answers with its identification line; panics with its log if it
    /// exits or does not answer within 10 s.
    fn wait_ready(&mut self, test: &str) {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{test}: sshd exited ({status}):\n{}", self.log());
            }
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut banner = [0u8; 4];
                if stream.read_exact(&mut banner).is_ok() && &banner == b"SSH-" {
                    // Say goodbye politely rather than leave sshd waiting for our version.
                    let _ = stream.write_all(b"SSH-2.0-breakglass-testkit\r\n");
                    return;
                }
            }
            if start.elapsed() > Duration::from_secs(10) {
                panic!("{test}: sshd did not answer within 10 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The name of the user the tests run as (`id -un`), whom the test sshd lets log in.
pub fn current_user() -> String {
    Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|u| !u.is_empty())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "root".into())
}

/// A port nothing listens on right now (bound, then released, by the OS).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}
