//! Opt-in, checksummed download of CIFAR-10, CIFAR-100 (binary releases) and Fashion-MNIST from
//! their home pages, for users who are online. Nothing here runs unless called: loading a
//! [`DatasetSpec`] never downloads.
//!
//! Files arrive as `<name>.part`, resumed with an HTTP `Range` request when a previous attempt
//! was cut off, are checked against the published checksum and only then renamed to `<name>`;
//! a mismatch deletes the partial file and is an error. Archives are unpacked into a temporary
//! folder that is renamed into place when complete.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use md5::Digest;

use super::{DataError, DatasetSpec};

/// A published checksum of a file, as lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    /// MD5 (what the dataset authors publish).
    Md5(String),
    /// SHA-256.
    Sha256(String),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Checksum {
    /// The expected digest, lowercase hex.
    pub fn expected(&self) -> String {
        match self {
            Checksum::Md5(h) | Checksum::Sha256(h) => h.to_ascii_lowercase(),
        }
    }

    /// The digest of the file at `path`, in this checksum's algorithm, lowercase hex.
    // `Read::read` returns n <= buf.len().
    #[allow(clippy::indexing_slicing)]
    pub fn digest_file(&self, path: &Path) -> Result<String, DataError> {
        let mut f = File::open(path).map_err(|e| DataError::io(path, e))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut md5 = md5::Md5::new();
        let mut sha = sha2::Sha256::new();
        loop {
            let n = f.read(&mut buf).map_err(|e| DataError::io(path, e))?;
            if n == 0 {
                break;
            }
            match self {
                Checksum::Md5(_) => md5.update(&buf[..n]),
                Checksum::Sha256(_) => sha.update(&buf[..n]),
            }
        }
        Ok(match self {
            Checksum::Md5(_) => hex(&md5.finalize()),
            Checksum::Sha256(_) => hex(&sha.finalize()),
        })
    }

    /// Whether the file at `path` has this checksum.
    pub fn matches(&self, path: &Path) -> Result<bool, DataError> {
        Ok(self.digest_file(path)? == self.expected())
    }
}

/// A dataset that can be downloaded from its home page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteDataset {
    /// CIFAR-10, binary version (162 MB).
    Cifar10,
    /// CIFAR-100, binary version (161 MB).
    Cifar100,
    /// Fashion-MNIST, four gzipped IDX files (30 MB).
    FashionMnist,
}

impl RemoteDataset {
    /// The URL the files are fetched from (a file's URL is this plus its name).
    pub fn home_url(&self) -> &'static str {
        match self {
            RemoteDataset::Cifar10 | RemoteDataset::Cifar100 => "https://www.cs.toronto.edu/~kriz/",
            RemoteDataset::FashionMnist => {
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
            }
        }
    }

    /// The files and their published MD5 sums.
    pub fn files(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            RemoteDataset::Cifar10 => {
                &[("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530")]
            }
            RemoteDataset::Cifar100 => &[(
                "cifar-100-binary.tar.gz",
                "03b5dce01913d631647c71ecec9e9cb8",
            )],
            RemoteDataset::FashionMnist => &[
                (
                    "train-images-idx3-ubyte.gz",
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                ),
                (
                    "train-labels-idx1-ubyte.gz",
                    "25c81989df183df01b3e8a0aad5dffbe",
                ),
                (
                    "t10k-images-idx3-ubyte.gz",
                    "bef4ecab320f06d8554ea6380940ec79",
                ),
                (
                    "t10k-labels-idx1-ubyte.gz",
                    "bb300cfdad3c16e7a12a480ee83cd310",
                ),
            ],
        }
    }

    /// The folder under the download root the dataset ends up in.
    pub fn folder(&self) -> &'static str {
        match self {
            RemoteDataset::Cifar10 => "cifar-10",
            RemoteDataset::Cifar100 => "cifar-100",
            RemoteDataset::FashionMnist => "fashion-mnist",
        }
    }

    /// The spec that loads the dataset once it is under `root`.
    pub fn spec(&self, root: &Path) -> DatasetSpec {
        let dir = root.join(self.folder());
        match self {
            RemoteDataset::Cifar10 => DatasetSpec::Cifar10 { dir },
            RemoteDataset::Cifar100 => DatasetSpec::Cifar100 {
                dir,
                labels: super::Cifar100Labels::Fine,
            },
            RemoteDataset::FashionMnist => DatasetSpec::Idx { dir },
        }
    }
}

/// Downloads datasets into a root folder. Uses a blocking HTTP client: call it from a plain
/// thread, not from inside an async runtime.
#[derive(Debug, Clone)]
pub struct Downloader {
    root: PathBuf,
    base_url: Option<String>,
}

impl Downloader {
    /// A downloader that keeps datasets under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            base_url: None,
        }
    }

    /// Fetch every file from `url` instead of the datasets' home pages (a mirror, or a local
    /// server in tests).
    pub fn with_base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn url(&self, ds: RemoteDataset, file: &str) -> String {
        let base = self.base_url.as_deref().unwrap_or(ds.home_url());
        format!("{}/{file}", base.trim_end_matches('/'))
    }

    /// Make `ds` available under the root (downloading and unpacking only what is missing) and
    /// return the spec that loads it.
    pub fn fetch(&self, ds: RemoteDataset) -> Result<DatasetSpec, DataError> {
        std::fs::create_dir_all(&self.root).map_err(|e| DataError::io(&self.root, e))?;
        let folder = self.root.join(ds.folder());
        match ds {
            RemoteDataset::Cifar10 | RemoteDataset::Cifar100 => {
                if !folder.is_dir() {
                    for (file, md5) in ds.files() {
                        let archive = self.root.join(file);
                        self.download(
                            &self.url(ds, file),
                            &archive,
                            &Checksum::Md5((*md5).into()),
                        )?;
                        unpack_tar_gz(&archive, &folder)?;
                    }
                }
            }
            RemoteDataset::FashionMnist => {
                std::fs::create_dir_all(&folder).map_err(|e| DataError::io(&folder, e))?;
                for (file, md5) in ds.files() {
                    let dest = folder.join(file);
                    self.download(&self.url(ds, file), &dest, &Checksum::Md5((*md5).into()))?;
                }
            }
        }
        Ok(ds.spec(&self.root))
    }

    /// Download `url` to `dest` and check it against `checksum`. An existing `dest` with the
    /// right checksum is kept; an existing `dest.part` is resumed with a `Range` request. On a
    /// checksum mismatch the partial file is deleted, `dest` is not created and the error says
    /// both sums.
    // `Read::read` returns n <= buf.len().
    #[allow(clippy::indexing_slicing)]
    pub fn download(&self, url: &str, dest: &Path, checksum: &Checksum) -> Result<(), DataError> {
        if dest.exists() {
            if checksum.matches(dest)? {
                return Ok(());
            }
            tracing::warn!(file = %dest.display(), "existing file has the wrong checksum; downloading again");
            std::fs::remove_file(dest).map_err(|e| DataError::io(dest, e))?;
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
        }
        let part = part_path(dest);
        let client = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .timeout(None)
            .build()
            .map_err(|e| DataError::Download {
                url: url.into(),
                what: e.to_string(),
            })?;
        let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        let mut req = client.get(url);
        if have > 0 {
            tracing::info!(file = %part.display(), bytes = have, "resuming download");
            req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let dl_err = |what: String| DataError::Download {
            url: url.into(),
            what,
        };
        let mut resp = req.send().map_err(|e| dl_err(e.to_string()))?;
        let status = resp.status();
        let append = if status == reqwest::StatusCode::PARTIAL_CONTENT && have > 0 {
            true
        } else if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE && have > 0 {
            // The partial file may already be complete; the checksum below decides.
            return finish(&part, dest, checksum);
        } else if status.is_success() {
            false
        } else {
            return Err(dl_err(format!("HTTP status {status}")));
        };
        let mut out = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&part)
            .map_err(|e| DataError::io(&part, e))?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = resp
                .read(&mut buf)
                .map_err(|e| dl_err(format!("connection broke ({e}); run again to resume")))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])
                .map_err(|e| DataError::io(&part, e))?;
        }
        out.sync_all().map_err(|e| DataError::io(&part, e))?;
        drop(out);
        finish(&part, dest, checksum)
    }
}

fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// Check `part` and rename it to `dest`, or delete it on a mismatch.
fn finish(part: &Path, dest: &Path, checksum: &Checksum) -> Result<(), DataError> {
    let actual = checksum.digest_file(part)?;
    let expected = checksum.expected();
    if actual != expected {
        std::fs::remove_file(part).map_err(|e| DataError::io(part, e))?;
        return Err(DataError::Checksum {
            path: dest.to_path_buf(),
            expected,
            actual,
        });
    }
    std::fs::rename(part, dest).map_err(|e| DataError::io(dest, e))
}

/// Unpack a `.tar.gz` into the folder `dest` (created; must not exist yet), atomically: the
/// archive goes into a temporary sibling folder that is renamed to `dest` when complete. If
/// another process finished `dest` first, its copy is kept. Entries that would land outside the
/// folder are refused by the tar reader.
pub fn unpack_tar_gz(archive: &Path, dest: &Path) -> Result<(), DataError> {
    if dest.exists() {
        return Ok(());
    }
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut tmp_name = dest.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".unpacking-{}-{nanos}", std::process::id()));
    let tmp = dest.with_file_name(tmp_name);
    let result = (|| {
        let f = File::open(archive).map_err(|e| DataError::io(archive, e))?;
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(f)));
        tar.set_preserve_permissions(false);
        tar.unpack(&tmp).map_err(|e| {
            DataError::invalid(
                archive,
                format!("cannot unpack into {}: {e}", tmp.display()),
            )
        })
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    match std::fs::rename(&tmp, dest) {
        Ok(()) => Ok(()),
        Err(_) if dest.exists() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(DataError::io(dest, e))
        }
    }
}
