//! The end of a build: the final image written, exported, pushed, and summarised.

use super::background::push_error;
use super::error::BuildError;
use super::stage::StageDone;
use super::timings::Phase;
use super::{Build, BuildOutcome};
use crate::image::export::{digest_file, docker_tar, oci_layout};
use crate::registry::{BlobToPush, ImageToPush};

/// Writes the target image and sends it to every output asked for.
pub(crate) fn finish(b: &Build<'_>, mut target: StageDone) -> Result<BuildOutcome, BuildError> {
    let opts = b.opts;
    // The image's own work after the last step: its row in the timings.
    let clock = b.timings.row(0, "output", "write, export, push");
    if opts.single_snapshot {
        super::squash::squash(b, &mut target, &clock)?;
    }
    for (k, v) in &opts.labels {
        target
            .builder
            .config_mut()
            .labels
            .insert(k.clone(), v.clone());
    }
    target.builder.format(opts.format);
    if let Some(t) = opts.reproducible {
        target.builder.created(t);
    }
    let store = &b.layers.store;
    let image = target
        .builder
        .write(store)
        .map_err(|e| BuildError::failed("writing the image", e))?;
    let names: Vec<String> = opts.destinations.iter().map(|d| d.to_string()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    if opts.oci_layout_path.is_some() || opts.tar_path.is_some() {
        // Files leave the machine whole: every layer must be local, base layers included.
        for l in &target.layers {
            b.layers.fetch(l, &clock)?;
        }
    }
    if let Some(dir) = &opts.oci_layout_path {
        oci_layout::export_oci_layout(store, dir, &image, &names)
            .map_err(|e| BuildError::failed(format!("--oci-layout-path {}", dir.display()), e))?;
        b.progress
            .line(&format!("wrote OCI layout {}", dir.display()));
    }
    if let Some(path) = &opts.tar_path {
        docker_tar::export_docker_tar(store, path, &image, &names)
            .map_err(|e| BuildError::failed(format!("--tar-path {}", path.display()), e))?;
        b.progress.line(&format!("wrote {}", path.display()));
    }
    let push = if !opts.push || opts.destinations.is_empty() {
        None
    } else {
        // Every blob must be in place before the manifest goes: the layers pushed while the
        // build ran are waited for (a failed one fails the push here, before any tag).
        let early = b.background.finish_uploads(&clock)?;
        let mut layers = Vec::new();
        for l in &target.layers {
            if early.iter().any(|(_, d, _)| *d == l.layer.digest) {
                continue;
            }
            let local = store.has(&l.layer.digest, l.layer.size);
            let same_registry = l.source.as_ref().is_some_and(|s| {
                opts.destinations
                    .iter()
                    .all(|d| d.repository.registry == s.registry)
            });
            // A blob only another registry has must pass through here.
            if !local && !same_registry {
                b.layers.fetch(l, &clock)?;
            }
            let mut blob = BlobToPush::from(l);
            if !same_registry {
                // Only a repository of the destination's registry can be mounted from.
                blob.mount_from = None;
            }
            layers.push(blob);
        }
        let to_push = ImageToPush {
            layers,
            config: BlobToPush::from(&image.config),
            manifest: image.manifest.clone(),
            media_type: image.media_type.to_string(),
        };
        let mut report = clock
            .time(Phase::Upload, || {
                b.runtime.block_on(b.client.push_image_counted(
                    &opts.destinations,
                    &to_push,
                    store,
                    Some(&b.progress.transfers().push),
                ))
            })
            .map_err(|e| push_error(&opts.destinations, e))?;
        report.blobs.extend(early);
        // The summary replaces the status line.
        b.progress.settle();
        for d in &opts.destinations {
            b.progress.line(&format!("pushed {d}@{}", report.digest));
        }
        Some(report)
    };
    if let Some(path) = &opts.digest_file {
        digest_file::write_digest_file(path, &image.digest)
            .map_err(|e| BuildError::failed(format!("--digest-file {}", path.display()), e))?;
    }
    if let Some(path) = &opts.image_name_with_digest_file {
        digest_file::write_image_name_with_digest_file(path, &names, &image.digest).map_err(
            |e| {
                BuildError::failed(
                    format!("--image-name-with-digest-file {}", path.display()),
                    e,
                )
            },
        )?;
    }
    // The cache repository is complete for the next build before this one says it is done.
    b.background.finish_cache_writes(&clock);
    b.progress.settle();
    let (run, cached) = *b.counts.lock().expect("counts");
    let downloaded = b.layers.downloaded();
    b.progress.line(&format!(
        "built {} ({} layers; {run} steps run, {cached} cached; {} downloaded)",
        image.digest,
        image.layers.len(),
        super::status::bytes(downloaded)
    ));
    Ok(BuildOutcome {
        image,
        push,
        steps_run: run,
        steps_cached: cached,
        downloaded,
        timings: b.timings.timings(),
    })
}
