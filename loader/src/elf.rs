//! Checks that a file is a Go filter plugin this host can load, before any `dlopen`.
//!
//! `dlopen` runs a library's initialisers, and a Go library starts its runtime there. So every
//! property that the bytes show is checked first, and the error names what the file is
//! instead.

use std::path::Path;

use object::read::elf::{ElfFile, FileHeader, ProgramHeader, SectionHeader};
use object::{elf, Endianness, Object, ObjectSymbol};

use crate::error::ElfError;

/// Exports that Envoy's golang HTTP filter looks up in a plugin library. Envoy rejects a
/// library that lacks any one of them, and so does this check.
pub const REQUIRED_EXPORTS: [&str; 10] = [
    "envoyGoFilterNewHttpPluginConfig",
    "envoyGoFilterMergeHttpPluginConfig",
    "envoyGoFilterDestroyHttpPluginConfig",
    "envoyGoFilterOnHttpHeader",
    "envoyGoFilterOnHttpData",
    "envoyGoFilterOnHttpLog",
    "envoyGoFilterOnHttpStreamComplete",
    "envoyGoFilterOnHttpDestroy",
    "envoyGoRequestSemaDec",
    "envoyGoFilterCleanUp",
];

/// Prefix shared by the golang filter's exports and by the host callbacks a plugin imports.
const ENVOY_GO_PREFIX: &str = "envoyGo";

/// Facts about a plugin library that passed the checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfInfo {
    /// ELF machine name, such as `x86_64`.
    pub machine: String,
    /// Defined `envoyGo*` function symbols, sorted.
    pub go_exports: Vec<String>,
    /// Undefined `envoyGo*` symbols: the host callbacks the library expects the process to
    /// define, sorted. `dlopen` with `RTLD_NOW` fails if any of them is missing.
    pub host_imports: Vec<String>,
}

#[cfg(target_pointer_width = "64")]
type NativeHeader = elf::FileHeader64<Endianness>;
#[cfg(target_pointer_width = "32")]
type NativeHeader = elf::FileHeader32<Endianness>;

#[cfg(target_pointer_width = "64")]
const NATIVE_CLASS: u8 = elf::ELFCLASS64.0;
#[cfg(target_pointer_width = "32")]
const NATIVE_CLASS: u8 = elf::ELFCLASS32.0;

#[cfg(target_endian = "little")]
const NATIVE_DATA: u8 = elf::ELFDATA2LSB.0;
#[cfg(target_endian = "big")]
const NATIVE_DATA: u8 = elf::ELFDATA2MSB.0;

/// ELF machine of this host, or `None` on an architecture this table does not know, where
/// the machine check is skipped and `dlopen` reports a mismatch instead.
const NATIVE_MACHINE: Option<u16> = if cfg!(target_arch = "x86_64") {
    Some(elf::EM_X86_64.0)
} else if cfg!(target_arch = "aarch64") {
    Some(elf::EM_AARCH64.0)
} else if cfg!(target_arch = "riscv64") {
    Some(elf::EM_RISCV.0)
} else if cfg!(target_arch = "powerpc64") {
    Some(elf::EM_PPC64.0)
} else if cfg!(target_arch = "s390x") {
    Some(elf::EM_S390.0)
} else if cfg!(target_arch = "loongarch64") {
    Some(elf::EM_LOONGARCH.0)
} else {
    None
};

/// Length of `e_ident`, the start of every ELF file.
const IDENT_LEN: usize = 16;

/// Offsets in `e_ident` of the class (32 or 64 bit) and of the byte order.
const EI_CLASS: usize = 4;
const EI_DATA: usize = 5;

/// Reads `path` and checks that it is a Go filter plugin this host can load.
pub fn check_go_plugin(path: &Path) -> Result<ElfInfo, ElfError> {
    let bytes = std::fs::read(path).map_err(|error| ElfError::Read {
        path: path.to_owned(),
        error,
    })?;
    check_go_plugin_bytes(path, &bytes)
}

/// Checks `bytes`, the contents of `path`, in the order that gives the most specific error:
/// format, class, machine, type, completeness, then exports.
pub(crate) fn check_go_plugin_bytes(path: &Path, bytes: &[u8]) -> Result<ElfInfo, ElfError> {
    let path_buf = || path.to_owned();

    if bytes.is_empty() {
        return Err(ElfError::Empty { path: path_buf() });
    }
    if !bytes.starts_with(&elf::ELFMAG) {
        return Err(ElfError::NotElf {
            path: path_buf(),
            magic: describe_magic(bytes),
        });
    }
    if bytes.len() < IDENT_LEN {
        return Err(ElfError::Truncated {
            path: path_buf(),
            detail: format!(
                "the file is {} bytes, shorter than the ELF identification",
                bytes.len()
            ),
        });
    }

    let (class, data) = (bytes[EI_CLASS], bytes[EI_DATA]);
    if (class, data) != (NATIVE_CLASS, NATIVE_DATA) {
        return Err(ElfError::WrongClass {
            path: path_buf(),
            found: describe_class(class, data),
            expected: describe_class(NATIVE_CLASS, NATIVE_DATA),
        });
    }

    let header = NativeHeader::parse(bytes).map_err(|error| {
        if bytes.len() < size_of::<NativeHeader>() {
            ElfError::Truncated {
                path: path_buf(),
                detail: format!(
                    "the file is {} bytes, shorter than the ELF header",
                    bytes.len()
                ),
            }
        } else {
            ElfError::Malformed {
                path: path_buf(),
                detail: error.to_string(),
            }
        }
    })?;
    let endian = Endianness::default();

    let machine = header.e_machine(endian).0;
    if let Some(native) = NATIVE_MACHINE {
        if machine != native {
            return Err(ElfError::WrongMachine {
                path: path_buf(),
                found: machine_name(machine),
                expected: machine_name(native),
            });
        }
    }

    let file_type = header.e_type(endian).0;
    if file_type != elf::ET_DYN.0 {
        return Err(ElfError::NotSharedObject {
            path: path_buf(),
            found: describe_type(file_type),
        });
    }

    check_complete(header, endian, bytes).map_err(|problem| match problem {
        Problem::Truncated(detail) => ElfError::Truncated {
            path: path_buf(),
            detail,
        },
        Problem::Malformed(detail) => ElfError::Malformed {
            path: path_buf(),
            detail,
        },
    })?;

    let file = ElfFile::<NativeHeader>::parse(bytes).map_err(|error| ElfError::Malformed {
        path: path_buf(),
        detail: error.to_string(),
    })?;
    let (go_exports, host_imports) = envoy_go_symbols(&file);

    let missing: Vec<String> = REQUIRED_EXPORTS
        .iter()
        .filter(|name| !go_exports.iter().any(|export| export == *name))
        .map(|name| (*name).to_owned())
        .collect();
    if !missing.is_empty() {
        return Err(ElfError::NotGoPlugin {
            path: path_buf(),
            missing,
        });
    }

    Ok(ElfInfo {
        machine: machine_name(machine),
        go_exports,
        host_imports,
    })
}

enum Problem {
    Truncated(String),
    Malformed(String),
}

/// Checks that the program headers, the section headers, every loadable segment and every
/// section with file contents lie inside the file.
fn check_complete(header: &NativeHeader, endian: Endianness, bytes: &[u8]) -> Result<(), Problem> {
    let file_len = bytes.len() as u64;

    let phsize = u64::from(header.e_phnum(endian)) * u64::from(header.e_phentsize(endian));
    within_file(
        file_len,
        "program header table",
        header.e_phoff(endian),
        phsize,
    )?;
    let shsize = u64::from(header.e_shnum(endian)) * u64::from(header.e_shentsize(endian));
    within_file(
        file_len,
        "section header table",
        header.e_shoff(endian),
        shsize,
    )?;

    let segments = header
        .program_headers(endian, bytes)
        .map_err(|error| Problem::Malformed(error.to_string()))?;
    for segment in segments {
        within_file(
            file_len,
            "segment",
            segment.p_offset(endian),
            segment.p_filesz(endian),
        )?;
    }

    let sections = header
        .section_headers(endian, bytes)
        .map_err(|error| Problem::Malformed(error.to_string()))?;
    for section in sections {
        if section.sh_type(endian) != elf::SHT_NOBITS {
            within_file(
                file_len,
                "section",
                section.sh_offset(endian),
                section.sh_size(endian),
            )?;
        }
    }
    Ok(())
}

/// Checks that `size` bytes at `offset` lie inside a file of `file_len` bytes. The offset and
/// size are 32 or 64 bits wide, as the ELF class has them.
fn within_file(
    file_len: u64,
    what: &str,
    offset: impl Into<u64>,
    size: impl Into<u64>,
) -> Result<(), Problem> {
    let end = offset
        .into()
        .checked_add(size.into())
        .ok_or_else(|| Problem::Malformed(format!("the {what} extends past 2^64 bytes")))?;
    if end > file_len {
        return Err(Problem::Truncated(format!(
            "the file is {file_len} bytes, but its {what} ends at byte {end}"
        )));
    }
    Ok(())
}

/// Returns the defined `envoyGo*` functions and the undefined `envoyGo*` symbols of the
/// dynamic symbol table, each sorted and without duplicates.
fn envoy_go_symbols(file: &ElfFile<'_, NativeHeader>) -> (Vec<String>, Vec<String>) {
    let mut exports = Vec::new();
    let mut imports = Vec::new();
    for symbol in file.dynamic_symbols() {
        let Ok(name) = symbol.name() else {
            continue;
        };
        if !name.starts_with(ENVOY_GO_PREFIX) {
            continue;
        }
        if symbol.is_undefined() {
            imports.push(name.to_owned());
        } else if symbol.is_definition() && symbol.is_global() {
            exports.push(name.to_owned());
        }
    }
    for names in [&mut exports, &mut imports] {
        names.sort();
        names.dedup();
    }
    (exports, imports)
}

/// Describes the first bytes of a file that is not ELF, naming the format where known.
fn describe_magic(bytes: &[u8]) -> String {
    let shown: Vec<String> = bytes
        .iter()
        .take(4)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let shown = format!("bytes {}", shown.join(" "));

    let known = match bytes {
        [0xcf, 0xfa, 0xed, 0xfe, ..] | [0xfe, 0xed, 0xfa, 0xcf, ..] => {
            Some("a 64-bit Mach-O file, built for macOS")
        }
        [0xce, 0xfa, 0xed, 0xfe, ..] | [0xfe, 0xed, 0xfa, 0xce, ..] => {
            Some("a 32-bit Mach-O file, built for macOS")
        }
        [0xca, 0xfe, 0xba, 0xbe, ..] => Some("a universal Mach-O file (or a Java class file)"),
        [b'M', b'Z', ..] => Some("a Windows PE file"),
        [0x00, b'a', b's', b'm', ..] => Some("a WebAssembly module"),
        [0x1f, 0x8b, ..] => Some("a gzip file; extract the library first"),
        [b'P', b'K', 0x03, 0x04, ..] => Some("a zip file; extract the library first"),
        [b'!', b'<', b'a', b'r', b'c', b'h', b'>', ..] => {
            Some("an ar archive (a static library, as -buildmode=c-archive makes)")
        }
        [b'#', b'!', ..] => Some("a script"),
        _ if bytes.get(257..262) == Some(b"ustar") => Some("a tar file; extract the library first"),
        _ => match bytes.iter().find(|byte| !byte.is_ascii_whitespace()) {
            Some(b'<') => Some("HTML or XML text, such as an error page served with status 200"),
            Some(b'{') => Some("JSON text"),
            _ => None,
        },
    };
    match known {
        Some(format) => format!("{shown}, which look like {format}"),
        None => shown,
    }
}

fn describe_class(class: u8, data: u8) -> String {
    let bits = match class {
        1 => "32-bit".to_owned(),
        2 => "64-bit".to_owned(),
        other => format!("unknown-class ({other})"),
    };
    let order = match data {
        1 => "little-endian".to_owned(),
        2 => "big-endian".to_owned(),
        other => format!("unknown-byte-order ({other})"),
    };
    format!("{bits} {order}")
}

/// Returns the name of an ELF machine as the Linux and Go toolchains spell it.
fn machine_name(machine: u16) -> String {
    let name = match machine {
        3 => "x86 (386)",
        8 => "mips",
        20 => "powerpc",
        21 => "powerpc64",
        22 => "s390x",
        40 => "arm",
        62 => "x86_64",
        183 => "aarch64",
        243 => "riscv",
        258 => "loongarch",
        other => return format!("ELF machine {other}"),
    };
    name.to_owned()
}

fn describe_type(file_type: u16) -> String {
    let description = match file_type {
        0 => "of ELF type ET_NONE (no type)",
        1 => "an object file (ELF type ET_REL), not linked",
        2 => "an executable (ELF type ET_EXEC)",
        4 => "a core dump (ELF type ET_CORE)",
        other => return format!("of ELF type {other:#06x}"),
    };
    description.to_owned()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    const EI_VERSION: usize = 6;

    fn test_path() -> PathBuf {
        PathBuf::from("/test/plugin.so")
    }

    #[test]
    fn describe_magic_names_formats() {
        let cases: [(&[u8], &str); 4] = [
            (&[0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1], "Mach-O"),
            (b"MZ\x90\x00", "PE"),
            (b"\n  <!DOCTYPE html>", "HTML"),
            (b"\x1f\x8b\x08\x00", "gzip"),
        ];
        for (bytes, format) in cases {
            let description = describe_magic(bytes);
            assert!(
                description.contains(format),
                "{description:?} should name {format}"
            );
        }
    }

    #[test]
    fn short_ident_is_truncated() {
        let result = check_go_plugin_bytes(&test_path(), b"\x7fELF\x02\x01");
        assert!(
            matches!(result, Err(ElfError::Truncated { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn short_header_is_truncated() {
        let mut bytes = vec![0_u8; 40];
        bytes[..4].copy_from_slice(&elf::ELFMAG);
        bytes[EI_CLASS] = NATIVE_CLASS;
        bytes[EI_DATA] = NATIVE_DATA;
        bytes[EI_VERSION] = 1;
        let result = check_go_plugin_bytes(&test_path(), &bytes);
        assert!(
            matches!(result, Err(ElfError::Truncated { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn other_class_is_rejected() {
        let mut bytes = vec![0_u8; 64];
        bytes[..4].copy_from_slice(&elf::ELFMAG);
        bytes[EI_CLASS] = if NATIVE_CLASS == 2 { 1 } else { 2 };
        bytes[EI_DATA] = NATIVE_DATA;
        let result = check_go_plugin_bytes(&test_path(), &bytes);
        assert!(
            matches!(result, Err(ElfError::WrongClass { .. })),
            "{result:?}"
        );
    }
}
