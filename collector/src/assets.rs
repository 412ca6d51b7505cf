//! Static files served from memory: the built SDK under `/sdk/` (`sdk/dist/`) and the dashboard
//! (`dashboard/dist/`), with content types, ETags, caching headers, and the precompressed
//! `.br` / `.gz` copies the builds write.

use crate::error::ApiError;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use std::collections::HashMap;
use std::path::Path;

struct File {
    body: Bytes,
    gzip: Option<Bytes>,
    brotli: Option<Bytes>,
    etag: String,
    content_type: &'static str,
}

/// A directory's files, read once at start-up.
#[derive(Default)]
pub struct Assets {
    files: HashMap<String, File>,
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("json" | "map") => "application/json",
        Some("ts") => "text/plain; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("txt") => "text/plain; charset=utf-8",
        Some("ico") => "image/x-icon",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

fn etag(body: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, body);
    let hex: String = d.as_ref()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("\"{hex}\"")
}

fn read_tree(dir: &Path, prefix: &str, files: &mut HashMap<String, File>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if name.starts_with('.') || name == "node_modules" {
            continue;
        }
        let key = format!("{prefix}{name}");
        if path.is_dir() {
            read_tree(&path, &format!("{key}/"), files);
            continue;
        }
        if name.ends_with(".gz") || name.ends_with(".br") {
            continue;
        }
        let Ok(body) = std::fs::read(&path) else {
            continue;
        };
        let sibling = |ext: &str| {
            std::fs::read(path.with_file_name(format!("{name}.{ext}")))
                .ok()
                .map(Bytes::from)
        };
        files.insert(
            key,
            File {
                etag: etag(&body),
                body: Bytes::from(body),
                gzip: sibling("gz"),
                brotli: sibling("br"),
                content_type: content_type(&name),
            },
        );
    }
}

impl Assets {
    /// Reads the files of `dir` and its subdirectories (none when `dir` is `None` or missing),
    /// keyed by their `/`-separated relative path.
    pub fn load(dir: Option<&Path>) -> Assets {
        let mut files = HashMap::new();
        if let Some(dir) = dir {
            read_tree(dir, "", &mut files);
        }
        tracing::info!(files = files.len(), "static files loaded");
        Assets { files }
    }

    /// Whether no file was loaded.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Whether a file of that relative path exists.
    pub fn contains(&self, name: &str) -> bool {
        self.files.contains_key(name)
    }

    /// The response for `name`, negotiated against the request's `Accept-Encoding`.
    ///
    /// # Errors
    /// [`ApiError::NotFound`] for an unknown name.
    pub fn get(&self, name: &str, req: &HeaderMap) -> Result<Response<Full<Bytes>>, ApiError> {
        let f = self.files.get(name).ok_or(ApiError::NotFound)?;
        let accepts = |enc: &str| {
            req.get_all(header::ACCEPT_ENCODING)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|t| {
                    let mut parts = t.split(';');
                    let token = parts.next().unwrap_or("").trim();
                    let zero_q = parts.any(|p| p.trim().replace(' ', "") == "q=0");
                    token.eq_ignore_ascii_case(enc) && !zero_q
                })
        };
        let mut r = Response::new(Full::new(Bytes::new()));
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(f.content_type),
        );
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        // Names are not content-hashed, so caches revalidate after five minutes (ETag makes that
        // a 304); the SDK may be loaded from any site's page, hence the open CORS.
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300, stale-while-revalidate=86400"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if let Ok(v) = HeaderValue::from_str(&f.etag) {
            h.insert(header::ETAG, v);
        }
        let matches = req
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == f.etag));
        if matches {
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            return Ok(r);
        }
        let (body, encoding) = match (&f.brotli, &f.gzip) {
            (Some(b), _) if accepts("br") => (b.clone(), Some("br")),
            (_, Some(g)) if accepts("gzip") => (g.clone(), Some("gzip")),
            _ => (f.body.clone(), None),
        };
        if let Some(e) = encoding {
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static(e));
        }
        *r.body_mut() = Full::new(body);
        Ok(r)
    }
}

/// The dashboard's Content-Security-Policy: its own scripts only, no inline script, API calls to
/// this origin only, never framed. Inline styles are allowed because ECharts positions its
/// canvases and tooltips with `style` attributes.
pub const DASHBOARD_CSP: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; \
    font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

impl Assets {
    /// A dashboard file (`dashboard/dist/`): `path` is relative to where the dashboard is mounted
    /// (`/` and `/dir/` are `index.html`). Adds the security headers (CSP, no framing, no
    /// referrer) and drops the open CORS of the SDK's files; `index.html` is revalidated on every
    /// load so a new build is picked up, the content-hashed `assets/` are cached for good.
    ///
    /// # Errors
    /// [`ApiError::NotFound`] for an unknown file.
    pub fn dashboard(
        &self,
        path: &str,
        req: &HeaderMap,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let mut name = path.trim_start_matches('/').to_string();
        if name.is_empty() || name.ends_with('/') {
            name.push_str("index.html");
        }
        let mut r = self.get(&name, req)?;
        let h = r.headers_mut();
        h.remove(header::ACCESS_CONTROL_ALLOW_ORIGIN);
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(DASHBOARD_CSP),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(if name.starts_with("assets/") {
                "public, max-age=31536000, immutable"
            } else {
                "no-cache"
            }),
        );
        Ok(r)
    }
}
