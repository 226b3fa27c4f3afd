//! The page itself: the files of `web/`, embedded in the binary at build
//! time (see build.rs), so the webmail needs nothing on the board beyond
//! the binary and loads nothing from elsewhere.
//!
//! `index.html` is revalidated on every load; it names the other files
//! with `?v=<their ETag>`, so those can be cached for a long time and an
//! upgrade still brings new ones at once.

use std::sync::OnceLock;

use super::Response;

/// The files of web/, by name, each raw-deflated by build.rs.
static FILES: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// The app shell, served at `/`.
const SHELL: &str = "index.html";

struct Asset {
    name: &'static str,
    body: Vec<u8>,
    content_type: &'static str,
    etag: String,
}

/// A file as build.rs deflated it. It was written by our own build, so it
/// cannot be damaged short of a broken binary; were it, the file is served
/// empty rather than the server stopping.
fn inflate(packed: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut body = Vec::new();
    if let Err(e) = flate2::read::DeflateDecoder::new(packed).read_to_end(&mut body) {
        log::error!("web: an embedded asset does not inflate: {e}");
        body.clear();
    }
    body
}

fn assets() -> &'static [Asset] {
    static ASSETS: OnceLock<Vec<Asset>> = OnceLock::new();
    ASSETS.get_or_init(|| {
        let mut out: Vec<Asset> = FILES
            .iter()
            .map(|&(name, packed)| {
                let body = inflate(packed);
                Asset {
                    name,
                    content_type: content_type(name),
                    etag: etag(&body),
                    body,
                }
            })
            .collect();
        let versions: Vec<(String, String)> = out
            .iter()
            .filter(|a| a.name != SHELL)
            .map(|a| {
                let version = a.etag.trim_matches('"').to_string();
                (
                    format!("\"/assets/{}\"", a.name),
                    format!("\"/assets/{}?v={version}\"", a.name),
                )
            })
            .collect();
        if let Some(shell) = out.iter_mut().find(|a| a.name == SHELL) {
            if let Ok(text) = std::str::from_utf8(&shell.body) {
                let mut text = text.to_string();
                for (plain, versioned) in &versions {
                    text = text.replace(plain.as_str(), versioned);
                }
                shell.body = text.into_bytes();
                shell.etag = etag(&shell.body);
            }
        }
        out
    })
}

/// Answers `GET /` (`name` None) or `GET /assets/<name>`; 304 when the
/// client's copy is current (`If-None-Match`).
pub fn serve(name: Option<&str>, if_none_match: Option<&str>) -> Response {
    let name = name.unwrap_or(SHELL);
    let Some(asset) = assets().iter().find(|a| a.name == name) else {
        return Response::not_found();
    };
    let cache = if asset.name == SHELL {
        "no-cache"
    } else {
        "public, max-age=31536000, immutable"
    };
    let fresh = if_none_match.is_some_and(|header| etag_matches(header, &asset.etag));
    let response = if fresh {
        Response::new(304, asset.content_type, Vec::new())
    } else {
        Response::new(200, asset.content_type, asset.body.clone())
    };
    response
        .with_header("ETag", asset.etag.clone())
        .with_header("Cache-Control", cache.to_string())
}

/// Whether an `If-None-Match` list names this ETag (weak comparison, as
/// RFC 9110 §13.1.2 asks for GET).
fn etag_matches(header: &str, etag: &str) -> bool {
    header.split(',').any(|candidate| {
        let candidate = candidate.trim();
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

fn etag(body: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, body);
    let mut out = String::from("\"");
    for byte in &digest.as_ref()[..8] {
        out.push_str(&format!("{byte:02x}"));
    }
    out.push('"');
    out
}

fn content_type(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map_or("", |(_, ext)| ext);
    match extension {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "webmanifest" => "application/manifest+json",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_names_assets_by_version() {
        let shell = serve(None, None);
        assert_eq!(shell.status, 200);
        let super::super::Body::Bytes(body) = &shell.body else {
            panic!("the shell is bytes");
        };
        let text = String::from_utf8_lossy(body);
        let css = assets().iter().find(|a| a.name == "app.css").unwrap();
        let version = css.etag.trim_matches('"');
        assert!(
            text.contains(&format!("/assets/app.css?v={version}")),
            "{text}"
        );
    }

    #[test]
    fn etags_revalidate() {
        let first = serve(Some("app.js"), None);
        let etag = first
            .headers
            .iter()
            .find(|(k, _)| *k == "ETag")
            .map(|(_, v)| v.clone())
            .unwrap();
        assert_eq!(serve(Some("app.js"), Some(&etag)).status, 304);
        assert_eq!(
            serve(Some("app.js"), Some(&format!("\"x\", W/{etag}"))).status,
            304
        );
        assert_eq!(serve(Some("app.js"), Some("\"other\"")).status, 200);
        assert_eq!(serve(Some("../Cargo.toml"), None).status, 404);
        assert_eq!(serve(Some("nope.js"), None).status, 404);
    }
}
