//! Image folders, the form users bring their own data in: `root/train/<class>/*.jpg|jpeg|png`
//! and optionally `root/test/<class>/...` (or, without a `train` folder, `root/<class>/...`).
//! Class names are the folder names in sorted order. Images are decoded in parallel.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;

use super::{DataError, Dataset};

const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|e| DataError::io(dir, e))?;
        let name = e.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        out.push(e.path());
    }
    out.sort();
    Ok(out)
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Class folders of `dir` and, per class, its image files.
fn scan(dir: &Path) -> Result<Vec<(String, Vec<PathBuf>)>, DataError> {
    let mut classes = Vec::new();
    for p in sorted_entries(dir)? {
        if !p.is_dir() {
            continue;
        }
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let files: Vec<PathBuf> = sorted_entries(&p)?
            .into_iter()
            .filter(|f| f.is_file() && is_image(f))
            .collect();
        classes.push((name, files));
    }
    if classes.is_empty() {
        return Err(DataError::invalid(
            dir,
            "no class folders (expected <class>/*.jpg|jpeg|png)",
        ));
    }
    Ok(classes)
}

/// Decode `files` into `out` (channel-major RGB, `3*h*w` bytes each), resizing to `[h, w]` when
/// `resize`, else requiring that size. Returns whether every image was greyscale.
fn decode_into(
    files: &[PathBuf],
    [h, w]: [usize; 2],
    resize: bool,
    out: &mut [u8],
) -> Result<bool, DataError> {
    let plane = h * w;
    let mut all_grey = true;
    for (f, dst) in files.iter().zip(out.chunks_exact_mut(3 * plane)) {
        let img = image::open(f).map_err(|source| DataError::Image {
            path: f.clone(),
            source,
        })?;
        all_grey &= !img.color().has_color();
        let mut rgb = img.into_rgb8();
        if (rgb.height() as usize, rgb.width() as usize) != (h, w) {
            if !resize {
                return Err(DataError::invalid(
                    f,
                    format!(
                        "image is {}x{} (height x width), the others are {h}x{w}; \
                         ask for a resize to mix sizes",
                        rgb.height(),
                        rgb.width()
                    ),
                ));
            }
            rgb = image::imageops::resize(&rgb, w as u32, h as u32, FilterType::Triangle);
        }
        let (r, rest) = dst.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        // rgb is h x w (resized above): one pixel for each element of the planes.
        for (((r, g), b), px) in r.iter_mut().zip(g).zip(b).zip(rgb.pixels()) {
            [*r, *g, *b] = px.0;
        }
    }
    Ok(all_grey)
}

/// Decode a list of images with `threads` threads into one channel-major buffer.
fn decode_all(
    files: &[PathBuf],
    hw: [usize; 2],
    resize: bool,
    threads: usize,
) -> Result<(Vec<u8>, bool), DataError> {
    let per = 3 * hw[0] * hw[1];
    let mut buf = vec![0u8; files.len() * per];
    if files.is_empty() {
        return Ok((buf, false));
    }
    let chunk = files.len().div_ceil(threads.max(1));
    let results: Vec<Result<bool, DataError>> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .zip(buf.chunks_mut(chunk * per))
            .map(|(f, out)| s.spawn(move || decode_into(f, hw, resize, out)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(DataError::Argument(
                        "an image decoding thread panicked".into(),
                    ))
                })
            })
            .collect()
    });
    let mut all_grey = true;
    for r in results {
        all_grey &= r?;
    }
    Ok((buf, all_grey))
}

/// Keep only the first of three equal channels of every image.
fn to_grey(rgb: &[u8], plane: usize) -> Vec<u8> {
    rgb.chunks_exact(3 * plane)
        .flat_map(|img| img.iter().take(plane).copied())
        .collect()
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(16))
}

/// Load an image folder. `size` is `[height, width]` to resize every image to; without it all
/// images must share the size of the first one. Images are RGB, or one channel when every image
/// (train and test) is greyscale. Returns (train, test) where the test split comes from
/// `root/test` if it exists.
pub fn load_image_folder(
    root: &Path,
    size: Option<[usize; 2]>,
) -> Result<(Dataset, Option<Dataset>), DataError> {
    let train_dir = root.join("train");
    let (train_dir, test_dir) = if train_dir.is_dir() {
        let t = root.join("test");
        (train_dir, t.is_dir().then_some(t))
    } else if root.is_dir() {
        (root.to_path_buf(), None)
    } else {
        return Err(DataError::invalid(root, "image folder does not exist"));
    };
    let classes = scan(&train_dir)?;
    let names: Vec<String> = classes.iter().map(|(n, _)| n.clone()).collect();
    let mut files = Vec::new();
    let mut labels = Vec::new();
    for (k, (_, list)) in classes.iter().enumerate() {
        files.extend(list.iter().cloned());
        labels.extend(std::iter::repeat_n(k as u32, list.len()));
    }
    let Some(first) = files.first() else {
        return Err(DataError::invalid(
            &train_dir,
            "no images (*.jpg, *.jpeg, *.png) in the class folders",
        ));
    };
    let hw = match size {
        Some([h, w]) if h > 0 && w > 0 => [h, w],
        Some(s) => return Err(DataError::Argument(format!("resize to {s:?}"))),
        None => {
            let (w, h) = image::image_dimensions(first).map_err(|source| DataError::Image {
                path: first.clone(),
                source,
            })?;
            [h as usize, w as usize]
        }
    };
    let resize = size.is_some();
    let (train_px, mut grey) = decode_all(&files, hw, resize, threads())?;

    let mut test = None;
    if let Some(td) = &test_dir {
        let mut tfiles = Vec::new();
        let mut tlabels = Vec::new();
        for (name, list) in scan(td)? {
            let Some(k) = names.iter().position(|n| *n == name) else {
                return Err(DataError::invalid(
                    td.join(&name),
                    "test class has no training folder of the same name",
                ));
            };
            tfiles.extend(list.iter().cloned());
            tlabels.extend(std::iter::repeat_n(k as u32, list.len()));
        }
        let (px, g) = decode_all(&tfiles, hw, resize, threads())?;
        grey &= g || tfiles.is_empty();
        test = Some((px, tlabels));
    }
    let plane = hw[0] * hw[1];
    let channels = if grey { 1 } else { 3 };
    let pixels = |px: Vec<u8>| if grey { to_grey(&px, plane) } else { px };
    let base = root
        .file_name()
        .map_or_else(|| "images".to_owned(), |n| n.to_string_lossy().into_owned());
    let train = Dataset::new(
        base.clone(),
        [channels, hw[0], hw[1]],
        names.clone(),
        pixels(train_px),
        labels,
    )?;
    let test = test
        .map(|(px, l)| {
            Dataset::new(
                format!("{base}-test"),
                [channels, hw[0], hw[1]],
                names,
                pixels(px),
                l,
            )
        })
        .transpose()?;
    Ok((train, test))
}
