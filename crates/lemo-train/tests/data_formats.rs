//! Every dataset format, on small files written in that exact format by the test.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};

use lemo_train::data::{
    Cifar100Labels, DataError, DatasetSpec, load_cifar10, load_cifar100, load_digits, load_idx,
    load_image_folder, load_imagenet16,
};

type R = Result<(), Box<dyn std::error::Error>>;

/// A CIFAR image whose every byte of channel `c` is `(seed + c) % 256`.
fn cifar_pixels(seed: u8) -> Vec<u8> {
    (0..3)
        .flat_map(|c| std::iter::repeat_n(seed.wrapping_add(c), 1024))
        .collect()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

fn cifar10_dir(dir: &Path, per_batch: usize, with_test: bool) {
    for b in 1..=5 {
        let mut bytes = Vec::new();
        for i in 0..per_batch {
            bytes.push(((b * per_batch + i) % 10) as u8);
            bytes.extend(cifar_pixels((b * 10 + i) as u8));
        }
        write(&dir.join(format!("data_batch_{b}.bin")), &bytes);
    }
    if with_test {
        let mut bytes = Vec::new();
        for i in 0..4u8 {
            bytes.push(9 - i);
            bytes.extend(cifar_pixels(200 + i));
        }
        write(&dir.join("test_batch.bin"), &bytes);
    }
    write(
        &dir.join("batches.meta.txt"),
        b"airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n",
    );
}

#[test]
fn cifar10_binary() -> R {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&dir)?;
    cifar10_dir(&dir, 6, true);
    // The folder holding cifar-10-batches-bin works too.
    let (train, test) = load_cifar10(tmp.path())?;
    assert_eq!(train.len(), 30);
    assert_eq!(train.shape, [3, 32, 32]);
    assert_eq!(train.class_names[9], "truck");
    // record 0 of batch 1: label 6, pixels seed 10
    assert_eq!(train.labels[0], 6);
    assert_eq!(train.image(0), &cifar_pixels(10)[..]);
    assert_eq!(train.labels[29], ((5 * 6 + 5) % 10) as u32);
    let test = test.unwrap();
    assert_eq!(test.len(), 4);
    assert_eq!(test.labels, vec![9, 8, 7, 6]);
    assert_eq!(test.image(3)[1024], 204);

    // via the spec, with the 9:1 split
    let splits = DatasetSpec::Cifar10 { dir: dir.clone() }.load()?;
    assert_eq!(splits.train.len() + splits.val.len(), 30);
    assert_eq!(splits.val.len(), 3);
    assert_eq!(splits.test.map(|t| t.len()), Some(4));
    Ok(())
}

#[test]
fn cifar10_truncated_names_file_and_offset() -> R {
    let tmp = tempfile::tempdir()?;
    cifar10_dir(tmp.path(), 3, false);
    let f = tmp.path().join("data_batch_3.bin");
    let mut bytes = std::fs::read(&f)?;
    bytes.truncate(2 * 3073 + 100);
    write(&f, &bytes);
    let err = load_cifar10(tmp.path()).unwrap_err();
    match &err {
        DataError::Truncated { path, offset, .. } => {
            assert_eq!(path, &f);
            assert_eq!(*offset, 2 * 3073);
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("data_batch_3.bin") && msg.contains("6146"),
        "{msg}"
    );
    Ok(())
}

#[test]
fn cifar10_bad_label_and_missing_batch() -> R {
    let tmp = tempfile::tempdir()?;
    cifar10_dir(tmp.path(), 2, false);
    let f = tmp.path().join("data_batch_2.bin");
    let mut bytes = std::fs::read(&f)?;
    bytes[3073] = 10;
    write(&f, &bytes);
    match load_cifar10(tmp.path()).unwrap_err() {
        DataError::Malformed { path, offset, .. } => {
            assert_eq!(path, f);
            assert_eq!(offset, 3073);
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
    std::fs::remove_file(tmp.path().join("data_batch_4.bin"))?;
    let msg = load_cifar10(tmp.path()).unwrap_err().to_string();
    assert!(msg.contains("data_batch_4.bin"), "{msg}");
    Ok(())
}

fn cifar100_file(path: &Path, records: &[(u8, u8)]) {
    let mut bytes = Vec::new();
    for (i, &(coarse, fine)) in records.iter().enumerate() {
        bytes.push(coarse);
        bytes.push(fine);
        bytes.extend(cifar_pixels(i as u8 * 3));
    }
    write(path, &bytes);
}

#[test]
fn cifar100_binary_fine_and_coarse() -> R {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("cifar-100-binary");
    std::fs::create_dir(&dir)?;
    let train: Vec<(u8, u8)> = (0..40u32)
        .map(|i| ((i % 20) as u8, ((i * 7) % 100) as u8))
        .collect();
    cifar100_file(&dir.join("train.bin"), &train);
    cifar100_file(&dir.join("test.bin"), &[(19, 99), (0, 0)]);
    let coarse_names: String = (0..20).map(|i| format!("super{i}\n")).collect();
    write(&dir.join("coarse_label_names.txt"), coarse_names.as_bytes());

    let (fine, test) = load_cifar100(tmp.path(), Cifar100Labels::Fine)?;
    assert_eq!(fine.classes(), 100);
    assert_eq!(fine.class_names[5], "5"); // no fine_label_names.txt: numbered
    assert_eq!(fine.labels[3], 21);
    assert_eq!(fine.image(1)[2048], 5);
    assert_eq!(test.unwrap().labels, vec![99, 0]);

    let (coarse, test) = load_cifar100(&dir, Cifar100Labels::Coarse)?;
    assert_eq!(coarse.classes(), 20);
    assert_eq!(coarse.class_names[19], "super19");
    assert_eq!(coarse.labels[3], 3);
    assert_eq!(test.unwrap().labels, vec![19, 0]);

    // serde form of the spec
    let spec: DatasetSpec = serde_json::from_str(&format!(
        r#"{{"kind":"cifar100","dir":{:?},"labels":"coarse"}}"#,
        dir.display().to_string()
    ))?;
    assert_eq!(spec.load()?.train.classes(), 20);
    Ok(())
}

#[test]
fn cifar100_malformed_label() -> R {
    let tmp = tempfile::tempdir()?;
    cifar100_file(&tmp.path().join("train.bin"), &[(1, 1), (2, 100)]);
    match load_cifar100(tmp.path(), Cifar100Labels::Coarse).unwrap_err() {
        DataError::Malformed { offset, .. } => assert_eq!(offset, 3074 + 1),
        other => panic!("expected Malformed, got {other:?}"),
    }
    Ok(())
}

// ---------------------------------------------------------------- ImageNet16-120

fn fixture(name: &str) -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/data_fixtures/imagenet16")
    .join(name)
}

/// The fixtures (see gen.py): 6 images, labels 1, 120, 121, 1000, 7, 64; image i has every
/// byte of channel c equal to (i*37 + c*5) % 256.
fn check_fixture_batch(d: &lemo_train::data::Dataset, name: &str) {
    assert_eq!(d.shape, [3, 16, 16], "{name}");
    assert_eq!(d.classes(), 120, "{name}");
    assert_eq!(d.labels, vec![0, 119, 6, 63], "{name}");
    for (k, i) in [0usize, 1, 4, 5].into_iter().enumerate() {
        for c in 0..3 {
            let want = ((i * 37 + c * 5) % 256) as u8;
            assert!(
                d.image(k)[c * 256..(c + 1) * 256]
                    .iter()
                    .all(|&p| p == want),
                "{name}: image {k} channel {c}"
            );
        }
    }
}

/// A pickle exactly as Python 2's cPickle (protocol 2) writes NAS-Bench-201's batches:
/// `{'data': ndarray uint8 (n, 768), 'labels': [..]}` with the pixel data as a BINSTRING.
fn py2_pickle(labels: &[u32], pixel: impl Fn(usize, usize) -> u8) -> Vec<u8> {
    let n = labels.len();
    let mut p = vec![0x80, 2, b'}', b'q', 1, b'(', b'U', 4];
    p.extend_from_slice(b"dataq\x02cnumpy.core.multiarray\n_reconstruct\nq\x03cnumpy\nndarray\nq\x04K\x00\x85U\x01b\x87Rq\x05(K\x01");
    // shape (n, 768)
    p.push(b'J');
    p.extend_from_slice(&(n as i32).to_le_bytes());
    p.extend_from_slice(b"M\x00\x03\x86cnumpy\ndtype\nq\x06U\x02u1K\x00K\x01\x87Rq\x07(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T");
    p.extend_from_slice(&((n * 768) as u32).to_le_bytes());
    for i in 0..n {
        for k in 0..768 {
            p.push(pixel(i, k / 256));
        }
    }
    p.extend_from_slice(b"tbU\x06labelsq\x08]q\x09(");
    for &l in labels {
        if l < 256 {
            p.push(b'K');
            p.push(l as u8);
        } else {
            p.push(b'M');
            p.extend_from_slice(&(l as u16).to_le_bytes());
        }
    }
    p.extend_from_slice(b"eu.");
    p
}

#[test]
fn imagenet16_python3_pickles_every_protocol() -> R {
    for name in [
        "py3_protocol0.pkl",
        "py3_protocol2.pkl",
        "py3_protocol4.pkl",
        "py3_protocol5.pkl",
        "py3_protocol2_numpy_labels.pkl",
    ] {
        let tmp = tempfile::tempdir()?;
        std::fs::copy(fixture(name), tmp.path().join("train_data_batch_1"))?;
        std::fs::copy(fixture(name), tmp.path().join("val_data"))?;
        let (train, test) = load_imagenet16(tmp.path())?;
        check_fixture_batch(&train, name);
        check_fixture_batch(&test.unwrap(), name);
    }
    Ok(())
}

#[test]
fn imagenet16_python2_batches() -> R {
    let tmp = tempfile::tempdir()?;
    let pixel = |i: usize, c: usize| (i * 3 + c) as u8;
    let mut total_kept = 0;
    for b in 1..=10u32 {
        let labels: Vec<u32> = (0..12).map(|i| (b * 13 + i * 97) % 1000 + 1).collect();
        total_kept += labels.iter().filter(|&&l| l <= 120).count();
        write(
            &tmp.path().join(format!("train_data_batch_{b}")),
            &py2_pickle(&labels, pixel),
        );
    }
    write(
        &tmp.path().join("val_data"),
        &py2_pickle(&[120, 500, 1], pixel),
    );
    let splits = DatasetSpec::ImageNet16 {
        dir: tmp.path().to_path_buf(),
    }
    .load_with(0.0, 1)?;
    assert_eq!(splits.train.len(), total_kept);
    assert!(splits.train.labels.iter().all(|&l| l < 120));
    let test = splits.test.unwrap();
    assert_eq!(test.labels, vec![119, 0]);
    assert_eq!(test.image(1)[0], 6); // val image 2 (label 1): i=2, c=0
    assert_eq!(test.image(1)[767], 8);
    Ok(())
}

#[test]
fn imagenet16_truncated_and_malformed() -> R {
    let tmp = tempfile::tempdir()?;
    let full = py2_pickle(&[1, 2, 3], |_, _| 0);
    let f = tmp.path().join("train_data_batch_1");
    write(&f, &full[..400]);
    match load_imagenet16(tmp.path()).unwrap_err() {
        DataError::Truncated { path, offset, .. } => {
            assert_eq!(path, f);
            assert!(offset > 100 && offset < 400, "offset {offset}");
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    let mut bad = full.clone();
    bad[5] = 0xf0; // an opcode that does not exist
    write(&f, &bad);
    match load_imagenet16(tmp.path()).unwrap_err() {
        DataError::Malformed { offset, what, .. } => {
            assert_eq!(offset, 5);
            assert!(what.contains("0xf0"), "{what}");
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
    write(&f, &py2_pickle(&[1, 1001], |_, _| 0));
    let msg = load_imagenet16(tmp.path()).unwrap_err().to_string();
    assert!(msg.contains("1001"), "{msg}");
    Ok(())
}

// ---------------------------------------------------------------- image folders

fn save_png(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
    image::RgbImage::from_pixel(w, h, image::Rgb(rgb))
        .save(path)
        .unwrap();
}

#[test]
fn image_folder_train_and_test() -> R {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("pets");
    for (split, n) in [("train", 3), ("test", 1)] {
        for (class, rgb) in [("cat", [200, 10, 10]), ("dog", [10, 200, 10])] {
            let d = root.join(split).join(class);
            std::fs::create_dir_all(&d)?;
            for i in 0..n {
                save_png(&d.join(format!("{i}.png")), 6, 4, rgb);
            }
            write(&d.join("notes.txt"), b"not an image");
        }
    }
    // a JPEG too (lossy: compare loosely)
    image::RgbImage::from_pixel(6, 4, image::Rgb([10, 10, 200]))
        .save(root.join("train/dog/extra.JPG"))?;
    let (train, test) = load_image_folder(&root, None)?;
    assert_eq!(train.class_names, vec!["cat", "dog"]);
    assert_eq!(train.shape, [3, 4, 6]);
    assert_eq!(train.len(), 7);
    assert_eq!(train.labels, vec![0, 0, 0, 1, 1, 1, 1]);
    assert!(train.image(0)[..24].iter().all(|&p| p == 200));
    assert!(train.image(0)[24..].iter().all(|&p| p == 10));
    let jpg = train.image(3); // "extra.JPG" sorts before "0.png"? no: "0.png" < "extra.JPG"
    assert!(jpg[48..].iter().all(|&p| p == 10));
    let extra = train.image(6);
    assert!(extra[48..].iter().all(|&p| p > 150), "{:?}", &extra[48..]);
    let test = test.unwrap();
    assert_eq!(test.labels, vec![0, 1]);

    // a different size is an error naming the file, unless resized
    save_png(&root.join("train/cat/big.png"), 8, 8, [1, 2, 3]);
    let msg = load_image_folder(&root, None).unwrap_err().to_string();
    assert!(msg.contains("big.png") && msg.contains("8x8"), "{msg}");
    let (train, _) = load_image_folder(&root, Some([5, 5]))?;
    assert_eq!(train.shape, [3, 5, 5]);
    assert_eq!(train.len(), 8);
    Ok(())
}

#[test]
fn image_folder_greyscale_and_errors() -> R {
    let tmp = tempfile::tempdir()?;
    for class in ["a", "b"] {
        let d = tmp.path().join(class);
        std::fs::create_dir_all(&d)?;
        image::GrayImage::from_pixel(3, 3, image::Luma([77])).save(d.join("x.png"))?;
    }
    // no train/ folder: the root's class folders are the training data
    let spec = DatasetSpec::ImageFolder {
        dir: tmp.path().to_path_buf(),
        size: None,
    };
    let (train, test) = spec.load_raw()?;
    assert!(test.is_none());
    assert_eq!(train.shape, [1, 3, 3]);
    assert!(train.images.iter().all(|&p| p == 77));

    write(
        &tmp.path().join("b/broken.png"),
        b"\x89PNG\r\n\x1a\nnot really",
    );
    let msg = spec.load_raw().unwrap_err().to_string();
    assert!(msg.contains("broken.png"), "{msg}");
    Ok(())
}

// ---------------------------------------------------------------- IDX

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn idx_gzipped_and_plain() -> R {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("fashion");
    std::fs::create_dir(&dir)?;
    let n = 20u32;
    let pixels: Vec<u8> = (0..n * 28 * 28).map(|i| (i % 251) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    write(
        &dir.join("train-images-idx3-ubyte.gz"),
        &gz(&idx_bytes(&[n, 28, 28], &pixels)),
    );
    write(
        &dir.join("train-labels-idx1-ubyte.gz"),
        &gz(&idx_bytes(&[n], &labels)),
    );
    // test split not gzipped, MNIST's dotted spelling
    write(
        &dir.join("t10k-images.idx3-ubyte"),
        &idx_bytes(&[2, 28, 28], &pixels[..2 * 784]),
    );
    write(
        &dir.join("t10k-labels.idx1-ubyte"),
        &idx_bytes(&[2], &[3, 4]),
    );
    let (train, test) = load_idx(&dir)?;
    assert_eq!(train.shape, [1, 28, 28]);
    assert_eq!(train.len(), 20);
    assert_eq!(train.classes(), 10);
    assert_eq!(train.image(1)[0], (784 % 251) as u8);
    assert_eq!(train.labels[13], 3);
    assert_eq!(test.unwrap().labels, vec![3, 4]);

    // class names from classes.txt
    write(
        &dir.join("classes.txt"),
        b"t-shirt\ntrouser\npullover\ndress\ncoat\nsandal\nshirt\nsneaker\nbag\nboot\n",
    );
    assert_eq!(load_idx(&dir)?.0.class_names[9], "boot");
    Ok(())
}

#[test]
fn idx_truncated_and_mismatched() -> R {
    let tmp = tempfile::tempdir()?;
    let imgs = idx_bytes(&[3, 2, 2], &[1; 12]);
    write(
        &tmp.path().join("train-images-idx3-ubyte"),
        &imgs[..imgs.len() - 2],
    );
    write(
        &tmp.path().join("train-labels-idx1-ubyte"),
        &idx_bytes(&[3], &[0, 1, 2]),
    );
    match load_idx(tmp.path()).unwrap_err() {
        DataError::Truncated { path, offset, .. } => {
            assert!(path.ends_with("train-images-idx3-ubyte"));
            assert_eq!(offset, (imgs.len() - 2) as u64);
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    // a gzip stream cut short
    let g = gz(&imgs);
    std::fs::remove_file(tmp.path().join("train-images-idx3-ubyte"))?;
    write(
        &tmp.path().join("train-images-idx3-ubyte.gz"),
        &g[..g.len() / 2],
    );
    let msg = load_idx(tmp.path()).unwrap_err().to_string();
    assert!(msg.contains("train-images-idx3-ubyte.gz"), "{msg}");
    // wrong magic
    write(
        &tmp.path().join("train-images-idx3-ubyte.gz"),
        &gz(&idx_bytes(&[3, 2, 2], &[1; 12])),
    );
    write(
        &tmp.path().join("train-labels-idx1-ubyte"),
        &[0, 0, 9, 1, 0, 0, 0, 3, 0, 1, 2],
    );
    match load_idx(tmp.path()).unwrap_err() {
        DataError::Malformed { offset, .. } => assert_eq!(offset, 2),
        other => panic!("expected Malformed, got {other:?}"),
    }
    write(
        &tmp.path().join("train-labels-idx1-ubyte"),
        &idx_bytes(&[2], &[0, 1]),
    );
    let msg = load_idx(tmp.path()).unwrap_err().to_string();
    assert!(msg.contains("2 labels for the 3 images"), "{msg}");
    Ok(())
}

// ---------------------------------------------------------------- digits

#[test]
fn embedded_digits() -> R {
    let d = load_digits(None)?;
    assert_eq!(d.len(), 1797);
    assert_eq!(d.shape, [1, 8, 8]);
    assert_eq!(d.classes(), 10);
    assert_eq!(d.labels[..4], [0, 1, 2, 3]);
    // first row: 0,0,5,13,9,1,0,0 -> scaled by 255/16
    assert_eq!(d.image(0)[..4], [0, 0, 80, 207]);
    assert!(d.class_counts().iter().all(|&c| (170..=190).contains(&c)));
    let splits = DatasetSpec::default().load()?;
    assert_eq!(splits.train.len() + splits.val.len(), 1797);
    assert!(
        (175..=185).contains(&splits.val.len()),
        "{}",
        splits.val.len()
    );
    assert!(splits.test.is_none());
    Ok(())
}

#[test]
fn digits_csv_file_and_errors() -> R {
    let tmp = tempfile::tempdir()?;
    let row = |label: u32| {
        let mut r: Vec<String> = (0..64).map(|i| (i % 17).to_string()).collect();
        r.push(label.to_string());
        r.join(",")
    };
    let f = tmp.path().join("digits.csv");
    write(&f, format!("{}\n{}\n", row(3), row(9)).as_bytes());
    let spec = DatasetSpec::Digits {
        path: Some(f.clone()),
    };
    let (d, _) = spec.load_raw()?;
    assert_eq!(d.labels, vec![3, 9]);
    assert_eq!(d.image(0)[16], 255);
    let good = row(1);
    write(
        &f,
        format!("{good}\n{}\n", row(1).replace(",1", ",17")).as_bytes(),
    );
    match spec.load_raw().unwrap_err() {
        DataError::Malformed { offset, path, .. } => {
            assert_eq!(offset, good.len() as u64 + 1);
            assert_eq!(path, f);
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
    Ok(())
}
