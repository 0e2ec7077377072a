//! Static files: the page and its assets from `public/`, and never anything outside it.
//!
//! A URL path is decoded, checked segment by segment, and then checked again on disk, because
//! `..`, `%2e%2e`, a backslash or a symlink are all ways to climb out of the folder. Left out on
//! purpose: caching headers, ranges, directory listings, compression.

use crate::http::{HttpError, percent_decode};
use std::path::{Path, PathBuf};

/// Finds the file a URL path names inside `public_dir`: `/` is `index.html`.
pub fn find(public_dir: &Path, url_path: &str) -> Result<PathBuf, HttpError> {
    let decoded =
        percent_decode(url_path).ok_or(HttpError::BadRequest("bad percent-encoding in path"))?;
    let decoded =
        String::from_utf8(decoded).map_err(|_| HttpError::BadRequest("path is not UTF-8"))?;
    // A NUL ends a path early in the OS; a backslash is a separator on Windows.
    if decoded.contains(['\0', '\\']) {
        return Err(HttpError::BadRequest("NUL or backslash in path"));
    }
    let relative = match decoded.trim_start_matches('/') {
        "" => "index.html",
        rest => rest,
    };
    let mut path = public_dir.to_path_buf();
    for segment in relative.split('/') {
        // `.`, `..` and hidden files such as `.git`: never served. Empty segments (`a//b`) neither.
        if segment.is_empty() || segment.starts_with('.') {
            return Err(HttpError::NotFound);
        }
        path.push(segment);
    }
    // Belt and braces: a symlink inside public/ could still point outside it. The real path must
    // lie under the real public/.
    let real = path.canonicalize().map_err(|_| HttpError::NotFound)?;
    let root = public_dir.canonicalize().map_err(|_| HttpError::NotFound)?;
    if !real.starts_with(&root) || !real.is_file() {
        return Err(HttpError::NotFound);
    }
    Ok(real)
}

/// The `Content-Type` for a file, by its extension.
pub fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
    {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "txt" | "md" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("public")
    }

    #[test]
    fn root_is_index_html() {
        assert_eq!(
            find(&public(), "/").unwrap(),
            public().join("index.html").canonicalize().unwrap()
        );
    }

    #[test]
    fn climbing_out_is_refused() {
        for path in [
            "/../Cargo.toml",
            "/%2e%2e/Cargo.toml",
            "/%2E%2E%2FCargo.toml",
            "/./index.html",
            "/.git/config",
            "//etc/passwd",
        ] {
            assert_eq!(find(&public(), path), Err(HttpError::NotFound), "{path}");
        }
    }

    #[test]
    fn nul_backslash_and_bad_escapes_are_bad_requests() {
        for path in [
            "/index.html%00",
            "/..%5c..%5cCargo.toml",
            "/%zz",
            "/%4",
            "/%ff%fe",
        ] {
            assert!(
                matches!(find(&public(), path), Err(HttpError::BadRequest(_))),
                "{path}"
            );
        }
    }

    #[test]
    fn missing_file_is_not_found() {
        assert_eq!(find(&public(), "/nope.html"), Err(HttpError::NotFound));
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(
            content_type(Path::new("a/index.html")),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("app.js")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("style.css")),
            "text/css; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("shot.png")), "image/png");
        assert_eq!(
            content_type(Path::new("LICENSE")),
            "application/octet-stream"
        );
    }
}
