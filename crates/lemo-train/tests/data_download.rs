//! The checksummed, resumable downloader against a tiny HTTP server on 127.0.0.1.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use lemo_train::data::download::unpack_tar_gz;
use lemo_train::data::{Checksum, DataError, DatasetSpec, Downloader, RemoteDataset};

type R = Result<(), Box<dyn std::error::Error>>;

/// What the server saw: (path, Range header).
type Log = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// Serves `files` over HTTP/1.1 with Range support; `cut_after` bytes of a body (on the first
/// request only) then hangs up, like a broken connection. Returns the base URL and the log.
fn serve(files: HashMap<String, Vec<u8>>, cut_after: Option<usize>) -> (String, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log: Log = Arc::default();
    let seen = log.clone();
    std::thread::spawn(move || {
        let mut cut = cut_after;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
            let mut range = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("range")
                {
                    range = Some(v.trim().to_string());
                }
            }
            seen.lock().unwrap().push((path.clone(), range.clone()));
            let Some(body) = files.get(path.trim_start_matches('/')) else {
                let _ = stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
                continue;
            };
            let start = range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
            let (status, slice, extra) = match start {
                Some(s) if s >= body.len() => {
                    let _ = stream.write_all(format!("HTTP/1.1 416 Range Not Satisfiable\r\ncontent-range: bytes */{}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n", body.len()).as_bytes());
                    continue;
                }
                Some(s) => (
                    "206 Partial Content",
                    &body[s..],
                    format!(
                        "content-range: bytes {s}-{}/{}\r\n",
                        body.len() - 1,
                        body.len()
                    ),
                ),
                None => ("200 OK", &body[..], String::new()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n",
                slice.len()
            );
            let _ = stream.write_all(head.as_bytes());
            match cut.take() {
                Some(n) => {
                    let _ = stream.write_all(&slice[..n.min(slice.len())]);
                }
                None => {
                    let _ = stream.write_all(slice);
                }
            }
            let _ = stream.flush();
        }
    });
    (base, log)
}

fn md5_of(bytes: &[u8]) -> Result<Checksum, Box<dyn std::error::Error>> {
    let tmp = tempfile::NamedTempFile::new()?;
    std::fs::write(tmp.path(), bytes)?;
    let hex = Checksum::Md5(String::new()).digest_file(tmp.path())?;
    Ok(Checksum::Md5(hex))
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 253) as u8).collect()
}

#[test]
fn md5_and_sha256_known_values() -> R {
    let tmp = tempfile::NamedTempFile::new()?;
    std::fs::write(tmp.path(), b"abc")?;
    assert_eq!(
        Checksum::Md5(String::new()).digest_file(tmp.path())?,
        "900150983cd24fb0d6963f7d28e17f72"
    );
    assert_eq!(
        Checksum::Sha256(String::new()).digest_file(tmp.path())?,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    Ok(())
}

#[test]
fn download_happy_path_and_kept_when_present() -> R {
    let body = payload(300_000);
    let (base, log) = serve(HashMap::from([("a.bin".to_string(), body.clone())]), None);
    let tmp = tempfile::tempdir()?;
    let dest = tmp.path().join("sub/a.bin");
    let dl = Downloader::new(tmp.path()).with_base_url(&base);
    dl.download(&format!("{base}/a.bin"), &dest, &md5_of(&body)?)?;
    assert_eq!(std::fs::read(&dest)?, body);
    assert!(!tmp.path().join("sub/a.bin.part").exists());
    // a second call finds the file with the right checksum and does not download again
    dl.download(&format!("{base}/a.bin"), &dest, &md5_of(&body)?)?;
    assert_eq!(log.lock().unwrap().len(), 1);
    Ok(())
}

#[test]
fn checksum_mismatch_is_an_error_and_leaves_no_file() -> R {
    let body = payload(1000);
    let (base, _) = serve(HashMap::from([("a.bin".to_string(), body)]), None);
    let tmp = tempfile::tempdir()?;
    let dest = tmp.path().join("a.bin");
    let wrong = Checksum::Md5("0123456789abcdef0123456789abcdef".into());
    let err = Downloader::new(tmp.path())
        .download(&format!("{base}/a.bin"), &dest, &wrong)
        .unwrap_err();
    match &err {
        DataError::Checksum {
            expected, actual, ..
        } => {
            assert_eq!(expected, "0123456789abcdef0123456789abcdef");
            assert_eq!(actual.len(), 32);
        }
        other => panic!("expected Checksum, got {other:?}"),
    }
    assert!(!dest.exists());
    assert!(!tmp.path().join("a.bin.part").exists());
    Ok(())
}

#[test]
fn broken_download_resumes_with_a_range_request() -> R {
    let body = payload(200_000);
    let (base, log) = serve(
        HashMap::from([("big.bin".to_string(), body.clone())]),
        Some(70_000),
    );
    let tmp = tempfile::tempdir()?;
    let dest = tmp.path().join("big.bin");
    let sum = md5_of(&body)?;
    let dl = Downloader::new(tmp.path());
    let url = format!("{base}/big.bin");
    let err = dl.download(&url, &dest, &sum).unwrap_err();
    assert!(matches!(err, DataError::Download { .. }), "{err:?}");
    assert!(!dest.exists());
    let part = tmp.path().join("big.bin.part");
    assert_eq!(std::fs::metadata(&part)?.len(), 70_000);
    dl.download(&url, &dest, &sum)?;
    assert_eq!(std::fs::read(&dest)?, body);
    assert!(!part.exists());
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].1, None);
    assert_eq!(log[1].1.as_deref(), Some("bytes=70000-"));
    Ok(())
}

#[test]
fn complete_part_file_is_checked_and_renamed() -> R {
    let body = payload(5000);
    let (base, log) = serve(HashMap::from([("x".to_string(), body.clone())]), None);
    let tmp = tempfile::tempdir()?;
    std::fs::write(tmp.path().join("x.part"), &body)?;
    Downloader::new(tmp.path()).download(
        &format!("{base}/x"),
        &tmp.path().join("x"),
        &md5_of(&body)?,
    )?;
    assert_eq!(std::fs::read(tmp.path().join("x"))?, body);
    assert_eq!(log.lock().unwrap()[0].1.as_deref(), Some("bytes=5000-"));
    Ok(())
}

#[test]
fn http_error_is_reported() -> R {
    let (base, _) = serve(HashMap::new(), None);
    let tmp = tempfile::tempdir()?;
    let err = Downloader::new(tmp.path())
        .download(
            &format!("{base}/nope"),
            &tmp.path().join("nope"),
            &Checksum::Md5("00".into()),
        )
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("404") && msg.contains("/nope"), "{msg}");
    Ok(())
}

fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(enc);
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

#[test]
fn fetch_uses_the_published_checksum_and_unpack_is_atomic() -> R {
    // A fake CIFAR-10 archive served under the real file name: fetch() must refuse it, since it
    // checks the published MD5 of cifar-10-binary.tar.gz.
    let mut batch = Vec::new();
    for i in 0..2u8 {
        batch.push(i);
        batch.extend(std::iter::repeat_n(i, 3072));
    }
    let files: Vec<(String, Vec<u8>)> = (1..=5)
        .map(|i| {
            (
                format!("cifar-10-batches-bin/data_batch_{i}.bin"),
                batch.clone(),
            )
        })
        .collect();
    let entries: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let archive_bytes = tar_gz(&entries);
    let (base, log) = serve(
        HashMap::from([("cifar-10-binary.tar.gz".to_string(), archive_bytes.clone())]),
        None,
    );
    let tmp = tempfile::tempdir()?;
    let dl = Downloader::new(tmp.path()).with_base_url(format!("{base}/"));
    let err = dl.fetch(RemoteDataset::Cifar10).unwrap_err();
    assert!(matches!(err, DataError::Checksum { .. }), "{err:?}");
    assert_eq!(log.lock().unwrap()[0].0, "/cifar-10-binary.tar.gz");
    assert!(!tmp.path().join("cifar-10-binary.tar.gz").exists());
    assert!(!tmp.path().join("cifar-10-binary.tar.gz.part").exists());
    assert!(!tmp.path().join("cifar-10").exists());

    // The same archive unpacked by hand lands where fetch() would put it, and loads.
    let archive = tmp.path().join("cifar-10-binary.tar.gz");
    std::fs::write(&archive, &archive_bytes)?;
    unpack_tar_gz(&archive, &tmp.path().join("cifar-10"))?;
    let spec = RemoteDataset::Cifar10.spec(tmp.path());
    assert_eq!(
        spec,
        DatasetSpec::Cifar10 {
            dir: tmp.path().join("cifar-10")
        }
    );
    let (train, _) = spec.load_raw()?;
    assert_eq!(train.len(), 10);
    // no temporary folders left behind; a second unpack is a no-op
    unpack_tar_gz(&archive, &tmp.path().join("cifar-10"))?;
    let names: Vec<_> = std::fs::read_dir(tmp.path())?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    assert!(names.iter().all(|n| !n.contains("unpacking")), "{names:?}");

    // A corrupt archive is an error and leaves no folder.
    std::fs::write(&archive, &archive_bytes[..archive_bytes.len() / 2])?;
    assert!(unpack_tar_gz(&archive, &tmp.path().join("broken")).is_err());
    assert!(!tmp.path().join("broken").exists());
    Ok(())
}
