//! A small filesystem for the embedded data directory (a size-limited
//! tmpfs, so it needs root), and a filler that takes every free byte of it
//! until it is removed.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A mounted tmpfs; unmounted (lazily) on drop.
pub struct SmallDisk {
    pub path: PathBuf,
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let status = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("{program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?}: {status} (the disk-full scenario needs root to mount a tmpfs)"
        ))
    }
}

impl SmallDisk {
    /// Mounts a tmpfs of `mib` MiB at `path`.
    pub fn mount(path: &Path, mib: u64) -> Result<SmallDisk, String> {
        std::fs::create_dir_all(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let target = path.to_string_lossy().to_string();
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m"),
                "tmpfs",
                &target,
            ],
        )?;
        Ok(SmallDisk {
            path: path.to_path_buf(),
        })
    }

    fn filler(&self) -> PathBuf {
        self.path.join("filler")
    }

    /// Writes the filler until the filesystem is full; the bytes it took.
    pub fn fill(&self) -> Result<u64, String> {
        let mut file = std::fs::File::create(self.filler()).map_err(|e| e.to_string())?;
        let mut written = 0u64;
        for chunk in [1usize << 20, 64 << 10, 4 << 10, 512, 1] {
            let block = vec![0u8; chunk];
            while file.write_all(&block).is_ok() {
                written += chunk as u64;
            }
        }
        // The last write_all may have written part of a block; flush what it could.
        let _ = file.flush();
        Ok(written)
    }

    /// Removes the filler.
    pub fn free(&self) -> Result<(), String> {
        std::fs::remove_file(self.filler()).map_err(|e| format!("removing the filler: {e}"))
    }

    /// Bytes free now.
    pub fn available(&self) -> Option<u64> {
        let c = std::ffi::CString::new(self.path.to_string_lossy().as_bytes()).ok()?;
        // SAFETY: statvfs(3) on a NUL-terminated path into a zeroed struct we own.
        unsafe {
            let mut stat: libc::statvfs = std::mem::zeroed();
            if libc::statvfs(c.as_ptr(), &mut stat) != 0 {
                return None;
            }
            Some(stat.f_bavail as u64 * stat.f_frsize as u64)
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = run("umount", &["-l", &self.path.to_string_lossy()]);
    }
}
