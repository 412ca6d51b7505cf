//! Build tasks, run as `cargo xtask <task>` (the alias lives in `.cargo/config.toml`).
//!
//! - `build-sdk [--out DIR]`: the browser SDK into `DIR` (default `sdk/dist/`): `waymark.js` (script-tag bundle: stub +
//!   wasm-bindgen `no-modules` glue + loader, minified), `waymark_bg.wasm`, their `.gz` and `.br`
//!   copies, and the npm package in `sdk/dist/npm/`.
//! - `size [--compare] [--out DIR]`: builds (into `DIR`, default `sdk/dist/`), then prints the gzip sizes of both install paths; `--compare`
//!   also builds with `opt-level = "s"` (into a scratch directory) to compare with `"z"`.
//!
//! Reproducible: the wasm-bindgen CLI is checked against the version in `Cargo.lock` (and
//! installed if it differs), wasm-opt and terser come from `xtask/npm/package-lock.json` via
//! `npm ci`, and source paths are remapped so the machine's directories do not end up in the Wasm.

use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::{env, fs};

type Result<T> = std::result::Result<T, String>;

const USAGE: &str =
    "usage: cargo xtask build-sdk [--out DIR] | cargo xtask size [--compare] [--out DIR]";

/// The output directory: `--out DIR` (relative to the current directory), else `sdk/dist`.
fn out_dir(root: &Path, args: &[String]) -> Result<PathBuf> {
    match args.iter().position(|a| a == "--out") {
        Some(i) => args
            .get(i + 1)
            .map(PathBuf::from)
            .ok_or_else(|| USAGE.into()),
        None => Ok(root.join("sdk/dist")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let root = root();
    let result = out_dir(&root, &args).and_then(|out| match args.first().map(String::as_str) {
        Some("build-sdk") => build_sdk(&root, "z", &out).map(|s| s.print("z")),
        Some("size") => size(&root, args.iter().any(|a| a == "--compare"), &out),
        _ => Err(USAGE.into()),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Runs `cmd`, failing with its name when it cannot start or exits non-zero.
fn run(cmd: &mut Command) -> Result<()> {
    let name = format!("{cmd:?}");
    let status = cmd.status().map_err(|e| format!("{name}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{name}: {status}"))
    }
}

fn output(cmd: &mut Command) -> Result<String> {
    let name = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| format!("{name}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{name}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("{name}: {e}"))
}

fn cargo() -> Command {
    Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn write(path: &Path, data: &[u8]) -> Result<()> {
    fs::write(path, data).map_err(|e| format!("{}: {e}", path.display()))
}

/// The version of package `name` in `Cargo.lock`.
fn lock_version(root: &Path, name: &str) -> Result<String> {
    let lock = String::from_utf8_lossy(&read(&root.join("Cargo.lock"))?).into_owned();
    let needle = format!("name = \"{name}\"\nversion = \"");
    let start = lock
        .find(&needle)
        .ok_or_else(|| format!("{name} is not in Cargo.lock"))?
        + needle.len();
    let len = lock[start..].find('"').unwrap_or(0);
    Ok(lock[start..start + len].to_string())
}

/// The wasm-bindgen CLI must be exactly the version of the `wasm-bindgen` crate in the lock file.
fn ensure_wasm_bindgen(root: &Path) -> Result<()> {
    let want = lock_version(root, "wasm-bindgen")?;
    let have = output(Command::new("wasm-bindgen").arg("--version")).unwrap_or_default();
    if have.split_whitespace().nth(1) == Some(want.as_str()) {
        return Ok(());
    }
    eprintln!(
        "xtask: installing wasm-bindgen-cli {want} (found {:?})",
        have.trim()
    );
    run(cargo().args(["install", "wasm-bindgen-cli", "--version", &want]))
}

/// `npm ci` in `xtask/npm` unless its `node_modules` already matches the lock file; returns the
/// `.bin` directory with `wasm-opt` and `terser`.
fn ensure_npm(root: &Path) -> Result<PathBuf> {
    let dir = root.join("xtask/npm");
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let installed = modified(&dir.join("node_modules/.package-lock.json"));
    let locked = modified(&dir.join("package-lock.json"));
    if installed.is_none() || installed < locked {
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir))?;
    }
    Ok(dir.join("node_modules/.bin"))
}

fn target_dir(root: &Path) -> Result<PathBuf> {
    let meta = output(
        cargo()
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .current_dir(root),
    )?;
    let meta: serde_json::Value = serde_json::from_str(&meta).map_err(|e| e.to_string())?;
    meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| "cargo metadata: no target_directory".into())
}

/// Builds the SDK's cdylib with the `wasm` profile at `opt_level`; returns the `.wasm`.
fn cargo_build(root: &Path, opt_level: &str) -> Result<PathBuf> {
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_default();
    // Panic locations embed source paths: make them machine-independent.
    let flags = [
        format!("--remap-path-prefix={}=/waymark", root.display()),
        format!("--remap-path-prefix={}=/cargo", cargo_home.display()),
    ]
    .join("\x1f");
    run(cargo()
        .args([
            "build",
            "-p",
            "waymark-sdk",
            "--target",
            "wasm32-unknown-unknown",
        ])
        // Without `std` (see sdk/Cargo.toml): no panic messages or formatting in the bundle.
        .args(["--profile", "wasm", "--locked", "--no-default-features"])
        .env("CARGO_PROFILE_WASM_OPT_LEVEL", opt_level)
        .env("CARGO_ENCODED_RUSTFLAGS", flags)
        .current_dir(root))?;
    Ok(target_dir(root)?.join("wasm32-unknown-unknown/wasm/waymark_sdk.wasm"))
}

fn bindgen(wasm: &Path, target: &str, out: &Path) -> Result<()> {
    run(Command::new("wasm-bindgen")
        .args([
            "--target",
            target,
            "--out-name",
            "waymark",
            "--no-typescript",
        ])
        .arg("--out-dir")
        .arg(out)
        .arg(wasm))
}

fn wasm_opt(bin: &Path, input: &Path, out: &Path) -> Result<()> {
    run(Command::new(bin.join("wasm-opt"))
        .args(["-Oz", "--converge", "--strip-debug", "--strip-producers"])
        .arg(input)
        .arg("-o")
        .arg(out))
}

/// The import module's name in the Wasm and the glue (wasm-bindgen's is `./waymark_bg.js`).
const IMPORT_MODULE: &str = "w";

fn leb(data: &[u8], pos: &mut usize) -> Result<u32> {
    let mut value = 0u32;
    for shift in (0..35).step_by(7) {
        let byte = *data.get(*pos).ok_or("wasm: truncated LEB128")?;
        *pos += 1;
        value |= u32::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err("wasm: LEB128 too long".into())
}

fn put_leb(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_name(out: &mut Vec<u8>, name: &[u8]) -> Result<()> {
    put_leb(out, u32::try_from(name.len()).map_err(|e| e.to_string())?);
    out.extend_from_slice(name);
    Ok(())
}

fn take<'a>(data: &'a [u8], pos: &mut usize, len: usize) -> Result<&'a [u8]> {
    let bytes = data
        .get(*pos..*pos + len)
        .ok_or("wasm: truncated section")?;
    *pos += len;
    Ok(bytes)
}

/// `a`, `b`, …, `Z`, `ba`, …: short, valid JavaScript property names.
fn short_name(mut i: usize) -> String {
    const LETTERS: &[u8; 52] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut name = Vec::new();
    loop {
        name.insert(0, LETTERS[i % 52]);
        i /= 52;
        if i == 0 {
            return String::from_utf8_lossy(&name).into_owned();
        }
    }
}

/// `(old, new)` import names.
type Renames = Vec<(String, String)>;

/// Renames every import of the Wasm to a short name (and its module to [`IMPORT_MODULE`]):
/// wasm-bindgen's names (`__wbg_addEventListener_f2d27251d333a631`) are spelled out in both the
/// Wasm and the glue, about 2.5 KB of gzip. Returns the module and `(old, new)` names.
fn short_imports(wasm: &[u8]) -> Result<(Vec<u8>, Renames)> {
    let mut out = wasm.get(..8).ok_or("wasm: no header")?.to_vec();
    let mut names = Vec::new();
    let mut pos = 8;
    while pos < wasm.len() {
        let id = wasm[pos];
        pos += 1;
        let len = leb(wasm, &mut pos)? as usize;
        let body = take(wasm, &mut pos, len)?;
        if id != 2 {
            out.push(id);
            put_leb(&mut out, len as u32);
            out.extend_from_slice(body);
            continue;
        }
        let mut p = 0;
        let count = leb(body, &mut p)?;
        let mut section = Vec::new();
        put_leb(&mut section, count);
        for _ in 0..count {
            let n = leb(body, &mut p)? as usize;
            take(body, &mut p, n)?;
            let n = leb(body, &mut p)? as usize;
            let field = String::from_utf8_lossy(take(body, &mut p, n)?).into_owned();
            let desc_start = p;
            let kind = *body.get(p).ok_or("wasm: truncated import")?;
            p += 1;
            let limits = |p: &mut usize| -> Result<()> {
                let flags = *body.get(*p).ok_or("wasm: truncated limits")?;
                *p += 1;
                leb(body, p)?;
                if flags & 1 != 0 {
                    leb(body, p)?;
                }
                Ok(())
            };
            match kind {
                0 => {
                    leb(body, &mut p)?;
                }
                1 => {
                    p += 1;
                    limits(&mut p)?;
                }
                2 => limits(&mut p)?,
                3 => p += 2,
                _ => return Err(format!("wasm: unknown import kind {kind}")),
            }
            let desc = body.get(desc_start..p).ok_or("wasm: truncated import")?;
            let new = short_name(names.len());
            put_name(&mut section, IMPORT_MODULE.as_bytes())?;
            put_name(&mut section, new.as_bytes())?;
            section.extend_from_slice(desc);
            names.push((field, new));
        }
        if p != body.len() {
            return Err("wasm: unexpected bytes after the imports".into());
        }
        out.push(2);
        put_leb(
            &mut out,
            u32::try_from(section.len()).map_err(|e| e.to_string())?,
        );
        out.extend_from_slice(&section);
    }
    Ok((out, names))
}

/// The same renaming in a wasm-bindgen glue: each import is a key of the imports object
/// (`name: function…`, exactly once), and the object is handed over as `"./waymark_bg.js"`.
/// Fails if the glue does not look like that any more (a new wasm-bindgen version).
fn rename_in_glue(glue: &str, names: &[(String, String)]) -> Result<String> {
    let mut out = glue.to_string();
    for (old, new) in names {
        let key = format!("{old}:");
        if out.matches(&key).count() != 1 {
            return Err(format!("glue: import `{old}` is not exactly once a key"));
        }
        out = out.replace(&key, &format!("{new}:"));
        if out.contains(old.as_str()) {
            return Err(format!("glue: `{old}` is used other than as a key"));
        }
    }
    let module = "\"./waymark_bg.js\":";
    if out.matches(module).count() != 1 {
        return Err("glue: the imports module name is not exactly once a key".into());
    }
    Ok(out.replace(module, &format!("\"{IMPORT_MODULE}\":")))
}

fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::best());
    enc.write_all(data).map_err(|e| e.to_string())?;
    enc.finish().map_err(|e| e.to_string())
}

fn brotli(data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams {
        quality: 11,
        lgwin: 22,
        ..Default::default()
    };
    brotli::BrotliCompress(&mut &data[..], &mut out, &params).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Writes `name` into `dir` with `.gz` and `.br` copies; returns the gzip size.
fn write_compressed(dir: &Path, name: &str, data: &[u8]) -> Result<usize> {
    let gz = gzip(data)?;
    write(&dir.join(name), data)?;
    write(&dir.join(format!("{name}.gz")), &gz)?;
    write(&dir.join(format!("{name}.br")), &brotli(data)?)?;
    Ok(gz.len())
}

/// Gzip sizes in bytes.
struct Sizes {
    script_js: usize,
    wasm: usize,
    npm_js: usize,
}

impl Sizes {
    fn print(&self, opt_level: &str) {
        println!(
            "opt-level={opt_level}: script tag {} B gzip (waymark.js {} + waymark_bg.wasm {}); \
             npm {} B gzip (index.js + glue {} + wasm {})",
            self.script_js + self.wasm,
            self.script_js,
            self.wasm,
            self.npm_js + self.wasm,
            self.npm_js,
            self.wasm
        );
    }
}

/// The whole SDK build into `dist` (see the crate docs).
fn build_sdk(root: &Path, opt_level: &str, dist: &Path) -> Result<Sizes> {
    ensure_wasm_bindgen(root)?;
    let bin = ensure_npm(root)?;
    let wasm = cargo_build(root, opt_level)?;
    let work = target_dir(root)?.join("xtask").join(opt_level);
    let (script_dir, esm_dir) = (work.join("script"), work.join("esm"));
    bindgen(&wasm, "no-modules", &script_dir)?;
    bindgen(&wasm, "web", &esm_dir)?;
    // Both glues expect the same module; make sure before shipping one file for both.
    let bound = read(&script_dir.join("waymark_bg.wasm"))?;
    if bound != read(&esm_dir.join("waymark_bg.wasm"))? {
        return Err("wasm-bindgen produced different modules for `no-modules` and `web`".into());
    }
    let glue = String::from_utf8_lossy(&read(&script_dir.join("waymark.js"))?).into_owned();
    let esm_glue = String::from_utf8_lossy(&read(&esm_dir.join("waymark.js"))?).into_owned();
    let (renamed, names) = short_imports(&bound)?;
    let glue = rename_in_glue(&glue, &names)?;
    let esm_glue = rename_in_glue(&esm_glue, &names)?.into_bytes();
    let short = work.join("waymark_short.wasm");
    write(&short, &renamed)?;
    let optimized = work.join("waymark_bg.wasm");
    wasm_opt(&bin, &short, &optimized)?;
    let wasm_bytes = read(&optimized)?;

    // The script-tag bundle: glue and loader in one function scope, then minified.
    let sdk_js = root.join("sdk/js");
    let loader = String::from_utf8_lossy(&read(&sdk_js.join("loader.js"))?).into_owned();
    let version = env!("CARGO_PKG_VERSION");
    let bundle = format!(
        "/*! waymark-sdk {version} | Apache-2.0 */\n(function () {{\n'use strict';\n{glue}\n{loader}\n}})();\n"
    );
    let raw = work.join("waymark.bundle.js");
    let min = work.join("waymark.min.js");
    write(&raw, bundle.as_bytes())?;
    run(Command::new(bin.join("terser"))
        .arg(&raw)
        .args([
            "--compress",
            "--mangle",
            "--comments",
            "some",
            "--ecma",
            "2018",
        ])
        .arg("-o")
        .arg(&min))?;
    let script = read(&min)?;

    if dist.exists() {
        fs::remove_dir_all(dist).map_err(|e| format!("{}: {e}", dist.display()))?;
    }
    let npm = dist.join("npm");
    fs::create_dir_all(&npm).map_err(|e| format!("{}: {e}", npm.display()))?;
    let script_js = write_compressed(dist, "waymark.js", &script)?;
    let wasm_gz = write_compressed(dist, "waymark_bg.wasm", &wasm_bytes)?;

    // The npm package.
    let index = read(&sdk_js.join("index.js"))?;
    write(&npm.join("waymark.js"), &esm_glue)?;
    write(&npm.join("index.js"), &index)?;
    write(&npm.join("waymark_bg.wasm"), &wasm_bytes)?;
    write(&npm.join("script.js"), &script)?;
    for f in ["index.d.ts", "README.md"] {
        write(&npm.join(f), &read(&sdk_js.join(f))?)?;
    }
    write(&npm.join("package.json"), package_json(version).as_bytes())?;
    Ok(Sizes {
        script_js,
        wasm: wasm_gz,
        npm_js: gzip(&index)?.len() + gzip(&esm_glue)?.len(),
    })
}

/// The npm manifest. Written out by hand: in `exports`, `types` must come before `default`,
/// and `serde_json` would sort the keys.
fn package_json(version: &str) -> String {
    format!(
        r#"{{
  "name": "waymark-sdk",
  "version": "{version}",
  "description": "Privacy-first, cookieless web analytics: consent-gated page views, engagement and cart events (Rust/WebAssembly).",
  "license": "Apache-2.0",
  "type": "module",
  "main": "./index.js",
  "types": "./index.d.ts",
  "exports": {{
    ".": {{
      "types": "./index.d.ts",
      "default": "./index.js"
    }},
    "./script": "./script.js",
    "./waymark_bg.wasm": "./waymark_bg.wasm",
    "./package.json": "./package.json"
  }},
  "files": ["index.js", "index.d.ts", "waymark.js", "waymark_bg.wasm", "script.js", "README.md"],
  "sideEffects": ["./script.js"]
}}
"#
    )
}

fn size(root: &Path, compare: bool, out: &Path) -> Result<()> {
    let z = build_sdk(root, "z", out)?;
    if compare {
        let scratch = target_dir(root)?.join("xtask/size-s");
        let s = build_sdk(root, "s", &scratch)?;
        z.print("z");
        s.print("s");
        // Leave the default profile's artifacts in place for the next build.
        cargo_build(root, "z")?;
    } else {
        z.print("z");
    }
    Ok(())
}
