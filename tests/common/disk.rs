//! A small file system for one node's data directory, to fill it up: a tmpfs mounted in a
//! private user and mount namespace (`unshare`, no privilege on the host needed), kept alive by
//! a holder process so the node can exit and start again on the same files. Nothing is
//! mounted on the host; the namespace and its file system go when the holder is killed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct SmallDisk {
    holder: Child,
    dir: PathBuf,
}

impl SmallDisk {
    /// A tmpfs of `mib` MiB at `dir`, seen only by processes started through
    /// [`SmallDisk::launcher`].
    pub fn mount(dir: &Path, mib: u64) -> SmallDisk {
        let holder = Command::new("unshare")
            .args([
                "--user",
                "--map-root-user",
                "--mount",
                "--propagation",
                "private",
            ])
            .args(["sleep", "infinity"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare (util-linux) starts the namespace's holder");
        let disk = SmallDisk {
            holder,
            dir: dir.to_owned(),
        };
        let own = std::fs::read_link("/proc/self/ns/mnt").expect("our mount namespace");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_link(format!("/proc/{}/ns/mnt", disk.holder.id())).ok()
            == Some(own.clone())
        {
            assert!(Instant::now() < deadline, "unshare made no mount namespace");
            std::thread::sleep(Duration::from_millis(10));
        }
        let mounted = Command::new("nsenter")
            .args(disk.enter())
            .args([
                "sh",
                "-c",
                r#"mkdir -p "$1" && mount -t tmpfs -o "size=$2m" tmpfs "$1""#,
            ])
            .args(["sh", &dir.display().to_string(), &mib.to_string()])
            .status()
            .expect("nsenter runs");
        assert!(
            mounted.success(),
            "mounting a tmpfs in a user namespace: {mounted}"
        );
        disk
    }

    fn enter(&self) -> Vec<String> {
        let pid = self.holder.id().to_string();
        [
            "-t",
            &pid,
            "--user",
            "--mount",
            "--preserve-credentials",
            "--",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// The command that runs a program with this file system at its directory (`nsenter`
    /// `exec`s it: the process is the program's).
    pub fn launcher(&self) -> Vec<String> {
        let mut launcher = vec!["nsenter".to_owned()];
        launcher.extend(self.enter());
        launcher
    }

    /// The file system as this process sees it (through the holder's root).
    fn outside(&self) -> PathBuf {
        let relative = self.dir.strip_prefix("/").unwrap_or(&self.dir);
        Path::new("/proc")
            .join(self.holder.id().to_string())
            .join("root")
            .join(relative)
    }

    /// Take every free byte with a ballast file; how many it took.
    pub fn fill(&self) -> u64 {
        let mut ballast =
            std::fs::File::create(self.outside().join("ballast")).expect("the ballast file");
        let chunk = vec![0xB5_u8; 1 << 20];
        let mut taken = 0;
        loop {
            match ballast.write(&chunk) {
                Ok(0) => return taken,
                Ok(n) => taken += n as u64,
                Err(error) if error.raw_os_error() == Some(libc::ENOSPC) => return taken,
                Err(error) => panic!("filling the small disk: {error}"),
            }
        }
    }

    /// Give the ballast's space back.
    pub fn free(&self) {
        std::fs::remove_file(self.outside().join("ballast")).expect("the ballast removed");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
