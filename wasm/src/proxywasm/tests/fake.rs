//! An in-memory [`HttpHost`] for tests.

use std::collections::HashMap;
use std::ops::Range;

use crate::proxywasm::{BodyKind, HeaderMapKind, HeaderPairs, HttpHost, Unavailable};

/// A stream whose header maps, bodies and properties are plain collections. A map or body
/// that is absent is unavailable to the plugin.
#[derive(Default)]
pub(super) struct FakeHost {
    pub(super) maps: HashMap<HeaderMapKind, HeaderPairs>,
    pub(super) bodies: HashMap<BodyKind, Vec<u8>>,
    pub(super) properties: HashMap<Vec<String>, Vec<u8>>,
}

impl FakeHost {
    /// Returns a host with request headers `headers` and no other map.
    pub(super) fn with_request(headers: &[(&str, &str)]) -> Self {
        let mut host = Self::default();
        host.set_map(HeaderMapKind::RequestHeaders, headers);
        host
    }

    pub(super) fn set_map(&mut self, kind: HeaderMapKind, headers: &[(&str, &str)]) {
        let pairs = headers
            .iter()
            .map(|(name, value)| (name.as_bytes().to_vec(), value.as_bytes().to_vec()))
            .collect();
        self.maps.insert(kind, pairs);
    }

    /// Returns every value of `name` in `kind`, as text.
    pub(super) fn values(&self, kind: HeaderMapKind, name: &str) -> Vec<String> {
        self.maps
            .get(&kind)
            .into_iter()
            .flatten()
            .filter(|(key, _)| key == name.as_bytes())
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
            .collect()
    }

    fn map_mut(&mut self, kind: HeaderMapKind) -> Result<&mut HeaderPairs, Unavailable> {
        self.maps.get_mut(&kind).ok_or(Unavailable)
    }
}

impl HttpHost for FakeHost {
    fn header_pairs(&self, map: HeaderMapKind) -> Option<HeaderPairs> {
        self.maps.get(&map).cloned()
    }

    fn header_value(
        &self,
        map: HeaderMapKind,
        name: &[u8],
    ) -> Result<Option<Vec<u8>>, Unavailable> {
        let pairs = self.maps.get(&map).ok_or(Unavailable)?;
        Ok(pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone()))
    }

    fn add_header(
        &mut self,
        map: HeaderMapKind,
        name: &[u8],
        value: &[u8],
    ) -> Result<(), Unavailable> {
        self.map_mut(map)?.push((name.to_vec(), value.to_vec()));
        Ok(())
    }

    fn replace_header(
        &mut self,
        map: HeaderMapKind,
        name: &[u8],
        value: &[u8],
    ) -> Result<(), Unavailable> {
        let pairs = self.map_mut(map)?;
        pairs.retain(|(key, _)| key != name);
        pairs.push((name.to_vec(), value.to_vec()));
        Ok(())
    }

    fn remove_header(&mut self, map: HeaderMapKind, name: &[u8]) -> Result<(), Unavailable> {
        self.map_mut(map)?.retain(|(key, _)| key != name);
        Ok(())
    }

    fn set_header_pairs(
        &mut self,
        map: HeaderMapKind,
        pairs: HeaderPairs,
    ) -> Result<(), Unavailable> {
        *self.map_mut(map)? = pairs;
        Ok(())
    }

    fn body(&mut self, kind: BodyKind) -> Option<&[u8]> {
        self.bodies.get(&kind).map(Vec::as_slice)
    }

    fn replace_body(
        &mut self,
        kind: BodyKind,
        range: Range<usize>,
        bytes: &[u8],
    ) -> Result<(), Unavailable> {
        let body = self.bodies.get_mut(&kind).ok_or(Unavailable)?;
        body.splice(range, bytes.iter().copied());
        Ok(())
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let path: Vec<String> = path.iter().map(|segment| segment.to_string()).collect();
        self.properties.get(&path).cloned()
    }
}
