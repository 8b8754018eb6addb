//! The docker driver's image checks: present (or pulled), able to host the
//! host's supervisor binary, and GPU support for `--gpu`.

use bollard::query_parameters::CreateImageOptionsBuilder;
use tokio_stream::StreamExt;

use crate::DockerDriver;
use crate::engine::{engine_error, engine_message, not_found};
use openshell_driver::DriverError;

/// The dynamic loader the host's supervisor binary asks for: an image
/// without it (musl, busybox) cannot run it.
#[cfg(target_arch = "x86_64")]
pub(super) const LOADER: &str = "/lib64/ld-linux-x86-64.so.2";
#[cfg(target_arch = "aarch64")]
pub(super) const LOADER: &str = "/lib/ld-linux-aarch64.so.1";

impl DockerDriver {
    /// The image's configured user, when it exists locally (pulled if the
    /// engine can).
    pub(super) async fn ensure_image(
        &self,
        image: &str,
        default: bool,
    ) -> Result<Option<String>, DriverError> {
        let engine = self.engine();
        let docker = &self.inner.docker;
        match docker.inspect_image(image).await {
            Ok(found) => return Ok(found.config.and_then(|c| c.user)),
            Err(e) if not_found(&e) => {}
            Err(e) => {
                return Err(engine_error(
                    engine,
                    format!("inspecting the image {image}"),
                )(e));
            }
        }
        if default {
            return Err(DriverError::Refused(format!(
                "the default sandbox image '{image}' is not in the {} engine\n\
                 hint: build it offline with `images/sandbox/build --engine {}` from the OpenShell sources, \
                 or pass --from IMAGE",
                engine.name(),
                engine.name()
            )));
        }
        tracing::info!(image, "pulling");
        let mut pull = docker.create_image(
            Some(CreateImageOptionsBuilder::new().from_image(image).build()),
            None,
            None,
        );
        while let Some(progress) = pull.next().await {
            if let Err(e) = progress {
                return Err(DriverError::Refused(format!(
                    "the image '{image}' is not in the {} engine and pulling it failed: {}\n\
                     hint: build or load it locally first (`{} build`, `{} load`), or check the name",
                    engine.name(),
                    engine_message(&e),
                    engine.name(),
                    engine.name()
                )));
            }
        }
        match docker.inspect_image(image).await {
            Ok(found) => Ok(found.config.and_then(|c| c.user)),
            Err(e) => Err(engine_error(
                engine,
                format!("inspecting the image {image}"),
            )(e)),
        }
    }

    /// Refuses an image that cannot run the host's supervisor binary: one
    /// without glibc's dynamic loader (the engine would start it and the
    /// entrypoint would fail with a bare "no such file or directory").
    pub(super) async fn check_loader(
        &self,
        container: &str,
        image: &str,
    ) -> Result<(), DriverError> {
        match self
            .inner
            .docker
            .get_container_archive_info(
                container,
                Some(bollard::query_parameters::ContainerArchiveInfoOptions {
                    path: LOADER.to_owned(),
                }),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Err(DriverError::Refused(format!(
                "the image '{image}' cannot host the sandbox supervisor: it has no glibc ({LOADER} is missing)\n\
                 hint: the supervisor is the gateway host's binary and needs glibc 2.34 or newer in the image \
                 (Debian 12, Ubuntu 22.04 or newer); musl images such as Alpine, and busybox, cannot run it"
            ))),
            // The engine could not say: the start will tell.
            Err(error) => {
                tracing::debug!(error = %engine_message(&error), "checking the image's loader");
                Ok(())
            }
        }
    }

    /// Whether NVIDIA GPUs can be passed through: docker's `nvidia`
    /// runtime, or a CDI spec naming `nvidia.com/gpu`.
    pub(super) async fn gpu_support(&self) -> Result<bool, DriverError> {
        let info = self
            .inner
            .docker
            .info()
            .await
            .map_err(engine_error(self.engine(), "reading the engine's info"))?;
        if info.runtimes.is_some_and(|r| r.contains_key("nvidia")) {
            return Ok(true);
        }
        let dirs = info
            .cdi_spec_dirs
            .unwrap_or_else(|| vec!["/etc/cdi".to_owned(), "/var/run/cdi".to_owned()]);
        Ok(dirs.iter().any(|dir| {
            std::fs::read_dir(dir).is_ok_and(|entries| {
                entries.filter_map(Result::ok).any(|entry| {
                    std::fs::read_to_string(entry.path())
                        .is_ok_and(|text| text.contains("nvidia.com/gpu"))
                })
            })
        }))
    }
}
