//! The proxy-wasm serialized form of a header map: a little-endian `u32` count, then a
//! `u32` name length and a `u32` value length for every pair, then every name and value in
//! order, each followed by a NUL byte.

/// A header map as name and value bytes, in order.
pub type HeaderPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Error for serialized pairs whose lengths run past the end of the data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("serialized header map of {size} bytes is truncated: its lengths need more data")]
pub struct TruncatedPairs {
    pub size: usize,
}

/// Serializes `pairs`. Lengths above `u32::MAX` cannot occur for data a guest can hold.
pub fn serialize(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let data_size: usize = pairs
        .iter()
        .map(|(name, value)| name.len() + value.len() + 2)
        .sum();
    let mut out = Vec::with_capacity(4 + pairs.len() * 8 + data_size);

    out.extend_from_slice(&length_u32(pairs.len()).to_le_bytes());
    for (name, value) in pairs {
        out.extend_from_slice(&length_u32(name.len()).to_le_bytes());
        out.extend_from_slice(&length_u32(value.len()).to_le_bytes());
    }

    for (name, value) in pairs {
        out.extend_from_slice(name);
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    out
}

fn length_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Parses serialized pairs. Data shorter than the 4-byte count is an empty map, as the ABI
/// allows (`size` 0, or a single NUL byte). The byte after each name and value is skipped
/// without being checked, as Envoy does.
pub fn deserialize(data: &[u8]) -> Result<HeaderPairs, TruncatedPairs> {
    let truncated = TruncatedPairs { size: data.len() };
    let Some(count) = read_u32(data, 0) else {
        return Ok(Vec::new());
    };

    let count = count as usize;
    let lengths_end = count
        .checked_mul(8)
        .and_then(|size| size.checked_add(4))
        .filter(|&end| end <= data.len())
        .ok_or_else(|| truncated.clone())?;

    let mut pairs = Vec::with_capacity(count);
    let mut next = lengths_end;
    for index in 0..count {
        let name_len = read_u32(data, 4 + index * 8).ok_or_else(|| truncated.clone())?;
        let value_len = read_u32(data, 8 + index * 8).ok_or_else(|| truncated.clone())?;
        let name = take(data, &mut next, name_len as usize).ok_or_else(|| truncated.clone())?;
        let value = take(data, &mut next, value_len as usize).ok_or_else(|| truncated.clone())?;
        pairs.push((name.to_vec(), value.to_vec()));
    }
    Ok(pairs)
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// Returns `len` bytes at `*next` and moves `*next` past them and their terminator. The
/// terminator of the very last item may be missing.
fn take<'a>(data: &'a [u8], next: &mut usize, len: usize) -> Option<&'a [u8]> {
    let end = next.checked_add(len)?;
    let item = data.get(*next..end)?;
    *next = end + 1;
    Some(item)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str, value: &str) -> (Vec<u8>, Vec<u8>) {
        (name.as_bytes().to_vec(), value.as_bytes().to_vec())
    }

    #[test]
    fn serialize_matches_abi_example() {
        // The ABI's example: {"a": "1"}, {"b": "22"}.
        let bytes = serialize(&[pair("a", "1"), pair("b", "22")]);
        let expected: Vec<u8> = [
            &2u32.to_le_bytes()[..],
            &1u32.to_le_bytes(),
            &1u32.to_le_bytes(),
            &1u32.to_le_bytes(),
            &2u32.to_le_bytes(),
            b"a\x001\x00b\x0022\x00",
        ]
        .concat();
        assert_eq!(bytes, expected);
    }

    #[test]
    fn round_trip_keeps_order_and_bytes() {
        let pairs = vec![
            pair(":method", "GET"),
            pair(":path", "/a?b=c"),
            pair("x-empty", ""),
            (b"x-binary".to_vec(), vec![0xff, 0x00, 0x7f]),
            pair("x-repeated", "1"),
            pair("x-repeated", "2"),
        ];
        let parsed = deserialize(&serialize(&pairs)).expect("serialized pairs parse");
        assert_eq!(parsed, pairs);
    }

    #[test]
    fn empty_map_forms_parse_as_empty() {
        assert_eq!(deserialize(&[]), Ok(Vec::new()));
        assert_eq!(deserialize(&[0]), Ok(Vec::new()));
        assert_eq!(deserialize(&0u32.to_le_bytes()), Ok(Vec::new()));
        assert_eq!(serialize(&[]), 0u32.to_le_bytes().to_vec());
    }

    #[test]
    fn truncated_lengths_are_rejected() {
        let mut bytes = serialize(&[pair("name", "value")]);
        bytes.truncate(8);
        assert_eq!(deserialize(&bytes), Err(TruncatedPairs { size: 8 }));
    }

    #[test]
    fn truncated_data_is_rejected() {
        let bytes = serialize(&[pair("name", "value")]);
        let cut = &bytes[..bytes.len() - 3];
        assert!(deserialize(cut).is_err());
    }

    #[test]
    fn huge_count_is_rejected_without_allocating() {
        let bytes = u32::MAX.to_le_bytes();
        assert!(deserialize(&bytes).is_err());
    }

    #[test]
    fn missing_last_terminator_is_accepted() {
        let mut bytes = serialize(&[pair("a", "b")]);
        bytes.pop();
        assert_eq!(deserialize(&bytes), Ok(vec![pair("a", "b")]));
    }
}
