//! Images: inspect (for the environment an image declares), pull, and building the tiny
//! busybox-based stand-in game image used by the demo and the tests.

use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateImageOptionsBuilder, RemoveImageOptions, TagImageOptionsBuilder,
};
use futures_util::StreamExt;

use super::{Engine, Result, RuntimeError};

impl Engine {
    /// The `KEY=value` environment an image declares, or `None` when the image is not present.
    pub async fn image_env(&self, image: &str) -> Result<Option<Vec<String>>> {
        let c = self.client().await?;
        match c.inspect_image(image).await {
            Ok(i) => Ok(Some(i.config.and_then(|c| c.env).unwrap_or_default())),
            Err(e) => match self.fail("inspect image", e).await {
                RuntimeError::NotFound(_) => Ok(None),
                e => Err(e),
            },
        }
    }

    /// The size in bytes of a local image, or `None` when the image is not present.
    pub async fn image_size(&self, image: &str) -> Result<Option<u64>> {
        let c = self.client().await?;
        match c.inspect_image(image).await {
            Ok(i) => Ok(Some(i.size.unwrap_or(0).max(0) as u64)),
            Err(e) => match self.fail("inspect image", e).await {
                RuntimeError::NotFound(_) => Ok(None),
                e => Err(e),
            },
        }
    }

    /// The id of a local image, or `None` when the image is not present.
    pub async fn image_id(&self, image: &str) -> Result<Option<String>> {
        let c = self.client().await?;
        match c.inspect_image(image).await {
            Ok(i) => Ok(i.id),
            Err(e) => match self.fail("inspect image", e).await {
                RuntimeError::NotFound(_) => Ok(None),
                e => Err(e),
            },
        }
    }

    /// Tags the local image `source` as `target` (`repo:tag`).
    pub async fn tag_image(&self, source: &str, target: &str) -> Result<()> {
        let c = self.client().await?;
        let (repo, tag) = split_tag(target);
        let opts = TagImageOptionsBuilder::default()
            .repo(repo)
            .tag(tag)
            .build();
        match c.tag_image(source, Some(opts)).await {
            Ok(()) => {
                tracing::info!(image = %source, tag = %target, "docker: image tagged");
                Ok(())
            }
            Err(e) => Err(self.fail("tag image", e).await),
        }
    }

    /// Removes an image reference; a missing one is not an error.
    pub async fn remove_image(&self, image: &str) -> Result<()> {
        let c = self.client().await?;
        match c
            .remove_image(image, None::<RemoveImageOptions>, None)
            .await
        {
            Ok(_) => {
                tracing::info!(image = %image, "docker: image reference removed");
                Ok(())
            }
            Err(e) => match self.fail("remove image", e).await {
                RuntimeError::NotFound(_) => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Pulls `image` from its registry.
    pub async fn pull_image(&self, image: &str) -> Result<()> {
        let c = self.client().await?;
        let (name, tag) = split_tag(image);
        let opts = CreateImageOptionsBuilder::default()
            .from_image(name)
            .tag(tag)
            .build();
        let mut stream = c.create_image(Some(opts), None, None);
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(err) = info.error_detail.and_then(|d| d.message) {
                        return Err(RuntimeError::ImageUnavailable {
                            image: image.to_owned(),
                            reason: err,
                        });
                    }
                }
                Err(e) => {
                    return Err(match self.fail("pull image", e).await {
                        RuntimeError::Unavailable { host, reason } => {
                            RuntimeError::Unavailable { host, reason }
                        }
                        other => RuntimeError::ImageUnavailable {
                            image: image.to_owned(),
                            reason: other.to_string(),
                        },
                    });
                }
            }
        }
        tracing::info!(image = %image, "docker: image pulled");
        Ok(())
    }

    /// Builds an image from an in-memory tar build context and tags it `tag`.
    pub async fn build_image(&self, tag: &str, context_tar: Vec<u8>) -> Result<()> {
        let c = self.client().await?;
        let opts = BuildImageOptionsBuilder::default()
            .t(tag)
            .rm(true)
            .forcerm(true)
            .build();
        let mut stream = c.build_image(
            opts,
            None,
            Some(bollard::body_full(bytes::Bytes::from(context_tar))),
        );
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(err) = info.error_detail.and_then(|d| d.message) {
                        return Err(RuntimeError::Engine(format!("build {tag}: {err}")));
                    }
                }
                Err(e) => return Err(self.fail("build image", e).await),
            }
        }
        tracing::info!(image = %tag, "docker: image built");
        Ok(())
    }
}

/// `repo:tag` → (`repo`, `tag`), defaulting to `latest`; a registry port is not a tag.
fn split_tag(image: &str) -> (&str, &str) {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (image, "latest"),
    }
}

/// The build context of a stand-in game image: `FROM scratch`, the static busybox binary, and
/// an entrypoint that follows the PEON image contract (writes `config/state`, runs
/// `/actions/server_start`).
pub fn busybox_game_context(busybox: &[u8]) -> std::io::Result<Vec<u8>> {
    const DOCKERFILE: &str = "FROM scratch\n\
        COPY busybox /bin/busybox\n\
        COPY entrypoint /entrypoint\n\
        RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
        RUN [\"/bin/busybox\", \"sh\", \"-c\", \"mkdir -p /tmp /home/steam/config /home/steam/steamcmd/data /actions && chmod 1777 /tmp && chown -R 1000:1000 /home/steam\"]\n\
        ENV CONTAINER_TYPE=peon-busybox VERSION=1.0.0 PATH=/bin\n\
        ENTRYPOINT [\"/bin/sh\", \"/entrypoint\"]\n";
    const ENTRYPOINT: &str = "#!/bin/sh\n\
        # PEON image contract: state files in /home/steam/config, game started by /actions/server_start.\n\
        CONFIG=${CONFIG_DIR:-/home/steam/config}\n\
        mkdir -p \"$CONFIG\" 2>/dev/null\n\
        echo INITIALIZING > \"$CONFIG/state\" 2>/dev/null\n\
        if [ -x /actions/server_start ] || [ -f /actions/server_start ]; then\n\
          exec /bin/sh /actions/server_start\n\
        fi\n\
        echo 'no /actions/server_start: nothing to run'\n\
        echo ERROR > \"$CONFIG/state\"\n\
        exit 1\n";
    let mut ar = tar::Builder::new(Vec::new());
    for (name, data, mode) in [
        ("Dockerfile", DOCKERFILE.as_bytes(), 0o644),
        ("busybox", busybox, 0o755),
        ("entrypoint", ENTRYPOINT.as_bytes(), 0o755),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        ar.append_data(&mut h, name, data)?;
    }
    ar.into_inner()
}

#[cfg(test)]
mod tests {
    use super::split_tag;

    #[test]
    fn tags() {
        assert_eq!(split_tag("umlatt/steamcmd"), ("umlatt/steamcmd", "latest"));
        assert_eq!(split_tag("a/b:1.2"), ("a/b", "1.2"));
        assert_eq!(split_tag("reg:5000/a/b"), ("reg:5000/a/b", "latest"));
    }
}
