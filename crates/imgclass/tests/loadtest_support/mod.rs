//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod server;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use imgclass::cli::loadtest::{Loadtest, LoadtestArgs};
use imgclass::cli::{Cli, Command};

/// Parses `imgclass loadtest <args>` with the binary's own flags; `args` is
/// split on whitespace (test paths have none).
pub fn parse(args: &str) -> Result<LoadtestArgs, clap::Error> {
    let argv = ["imgclass", "loadtest"]
        .into_iter()
        .chain(args.split_whitespace());
    Cli::try_parse_from(argv).map(|cli| match cli.command {
        Command::Loadtest(a) => *a,
        other => panic!("parsed as {other:?}"),
    })
}

/// Parses and runs as the binary does; panics on a typed error.
pub fn run(args: &str) -> ExitCode {
    let args = parse(args).unwrap_or_else(|e| panic!("{e}"));
    let result = match args.plan().unwrap_or_else(|e| panic!("{e}")) {
        Loadtest::Run(options) => imgclass_loadtest::run(options),
        Loadtest::Report(options) => imgclass_loadtest::report(options),
    };
    result.unwrap_or_else(|e| panic!("loadtest failed: {e}"))
}

/// Writes small generated images (PNG, JPEG, BMP; one in a subfolder) and a
/// file that must be skipped. Returns the folder's relative image names.
pub fn make_images(dir: &Path) -> Vec<String> {
    std::fs::create_dir_all(dir.join("nested/deeper")).unwrap();
    let names = [
        "a.png",
        "b.jpg",
        "c.bmp",
        "nested/d.JPEG",
        "nested/deeper/e.png",
    ];
    for (i, name) in names.iter().enumerate() {
        let img = image::RgbImage::from_fn(32 + i as u32 * 8, 24, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 11) as u8, (i * 40) as u8])
        });
        let format = match name
            .rsplit('.')
            .next()
            .unwrap()
            .to_ascii_lowercase()
            .as_str()
        {
            "png" => image::ImageFormat::Png,
            "jpg" | "jpeg" => image::ImageFormat::Jpeg,
            _ => image::ImageFormat::Bmp,
        };
        img.save_with_format(dir.join(name), format).unwrap();
    }
    std::fs::write(dir.join("notes.txt"), "not an image").unwrap();
    names.iter().map(|s| s.to_string()).collect()
}

/// A temporary folder with generated images and an output folder path.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub images: PathBuf,
    pub names: Vec<String>,
    pub out: PathBuf,
}

impl Fixture {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let images = tmp.path().join("images");
        let names = make_images(&images);
        let out = tmp.path().join("out");
        Self {
            tmp,
            images,
            names,
            out,
        }
    }

    pub fn images(&self) -> &str {
        self.images.to_str().unwrap()
    }

    pub fn out(&self) -> &str {
        self.out.to_str().unwrap()
    }

    pub fn summary(&self) -> serde_json::Value {
        read_json(&self.out.join("summary.json"))
    }

    pub fn records(&self) -> Vec<imgclass_loadtest::Record> {
        imgclass_loadtest::output::csv::read(&self.out.join("results.csv")).unwrap()
    }
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}
