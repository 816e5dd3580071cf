//! [`Engine`] behind the runtime seam: each method of [`Runtime`] is one of the engine's calls.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::stream::BoxStream;

use super::Engine;
use crate::runtime::{
    Attached, ContainerDetails, ContainerInfo, ContainerSpec, EngineInfo, Limits, Result, RtFuture,
    Runtime, RuntimeEvent, Stats,
};

impl Runtime for Engine {
    fn host(&self) -> &str {
        Engine::host(self)
    }
    fn info(&self) -> RtFuture<'_, EngineInfo> {
        Box::pin(Engine::info(self))
    }
    fn list_labelled<'a>(
        &'a self,
        label: &'a str,
        value: &'a str,
    ) -> RtFuture<'a, Vec<ContainerInfo>> {
        Box::pin(Engine::list_labelled(self, label, value))
    }
    fn list_running(&self) -> RtFuture<'_, Vec<ContainerInfo>> {
        Box::pin(Engine::list_running(self))
    }
    fn inspect<'a>(&'a self, name: &'a str) -> RtFuture<'a, Option<ContainerDetails>> {
        Box::pin(Engine::inspect(self, name))
    }
    fn create<'a>(&'a self, spec: &'a ContainerSpec) -> RtFuture<'a, String> {
        Box::pin(self.create_container(spec))
    }
    fn start<'a>(&'a self, name: &'a str) -> RtFuture<'a, ()> {
        Box::pin(self.start_container(name))
    }
    fn stop<'a>(
        &'a self,
        name: &'a str,
        signal: Option<&'a str>,
        grace: Duration,
    ) -> RtFuture<'a, ()> {
        Box::pin(self.stop_container(name, signal, grace))
    }
    fn kill<'a>(&'a self, name: &'a str, signal: &'a str) -> RtFuture<'a, ()> {
        Box::pin(self.kill_container(name, signal))
    }
    fn remove<'a>(&'a self, name: &'a str) -> RtFuture<'a, ()> {
        Box::pin(self.remove_container(name))
    }
    fn logs<'a>(&'a self, name: &'a str, tail: usize) -> RtFuture<'a, Vec<String>> {
        Box::pin(Engine::logs(self, name, tail))
    }
    fn attach<'a>(&'a self, name: &'a str) -> RtFuture<'a, Attached> {
        Box::pin(Engine::attach(self, name))
    }
    fn stats<'a>(&'a self, name: &'a str) -> RtFuture<'a, Option<Stats>> {
        Box::pin(Engine::stats(self, name))
    }
    fn update_limits<'a>(&'a self, name: &'a str, limits: Limits) -> RtFuture<'a, ()> {
        Box::pin(Engine::update_limits(self, name, limits))
    }
    fn events<'a>(
        &'a self,
        since: i64,
        label: &'a str,
        value: &'a str,
    ) -> RtFuture<'a, BoxStream<'static, Result<RuntimeEvent>>> {
        Box::pin(Engine::events(self, since, label, value))
    }
    fn image_env<'a>(&'a self, image: &'a str) -> RtFuture<'a, Option<Vec<String>>> {
        Box::pin(Engine::image_env(self, image))
    }
    fn image_size<'a>(&'a self, image: &'a str) -> RtFuture<'a, Option<u64>> {
        Box::pin(Engine::image_size(self, image))
    }
    fn pull_image<'a>(&'a self, image: &'a str) -> RtFuture<'a, ()> {
        Box::pin(Engine::pull_image(self, image))
    }
    fn image_id<'a>(&'a self, image: &'a str) -> RtFuture<'a, Option<String>> {
        Box::pin(Engine::image_id(self, image))
    }
    fn tag_image<'a>(&'a self, source: &'a str, target: &'a str) -> RtFuture<'a, ()> {
        Box::pin(Engine::tag_image(self, source, target))
    }
    fn remove_image<'a>(&'a self, image: &'a str) -> RtFuture<'a, ()> {
        Box::pin(Engine::remove_image(self, image))
    }
    fn ensure_network<'a>(
        &'a self,
        name: &'a str,
        labels: &'a HashMap<String, String>,
        fallback_pool: &'a str,
    ) -> RtFuture<'a, ()> {
        Box::pin(Engine::ensure_network(self, name, labels, fallback_pool))
    }
    fn remove_network<'a>(&'a self, name: &'a str) -> RtFuture<'a, ()> {
        Box::pin(Engine::remove_network(self, name))
    }
}
