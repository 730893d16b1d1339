//! Platform names as OCI uses them (Go's GOOS and GOARCH), for this host and for ELF files.

/// Operating system of every plugin edgefn loads.
pub(crate) const PLUGIN_OS: &str = "linux";

/// Returns this host's architecture as Go's GOARCH spells it (`amd64`, `arm64`, …), the name
/// OCI image indexes and configs use.
pub fn host_architecture() -> &'static str {
    if cfg!(target_arch = "x86_64") {
        "amd64"
    } else if cfg!(target_arch = "aarch64") {
        "arm64"
    } else if cfg!(target_arch = "riscv64") {
        "riscv64"
    } else if cfg!(all(target_arch = "powerpc64", target_endian = "little")) {
        "ppc64le"
    } else if cfg!(target_arch = "powerpc64") {
        "ppc64"
    } else if cfg!(target_arch = "s390x") {
        "s390x"
    } else if cfg!(target_arch = "loongarch64") {
        "loong64"
    } else if cfg!(target_arch = "x86") {
        "386"
    } else if cfg!(target_arch = "arm") {
        "arm"
    } else {
        std::env::consts::ARCH
    }
}

/// Offsets and values of the ELF header fields read here.
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const EI_CLASS: usize = 4;
const EI_DATA: usize = 5;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const ELFDATA2MSB: u8 = 2;
const E_TYPE: usize = 16;
const E_MACHINE: usize = 18;
const ET_DYN: u16 = 3;

/// Returns the GOARCH name of the shared library whose first bytes are `header`, or the
/// reason it is not a shared library of a known architecture.
pub fn elf_architecture(header: &[u8]) -> Result<&'static str, String> {
    if header.len() < E_MACHINE + 2 || &header[..4] != ELF_MAGIC {
        return Err("not an ELF file; build the plugin with `go build -buildmode=c-shared`".into());
    }

    let read_u16 = |offset: usize| {
        let bytes = [header[offset], header[offset + 1]];
        match header[EI_DATA] {
            ELFDATA2LSB => Ok(u16::from_le_bytes(bytes)),
            ELFDATA2MSB => Ok(u16::from_be_bytes(bytes)),
            other => Err(format!("invalid ELF byte order {other}")),
        }
    };
    if read_u16(E_TYPE)? != ET_DYN {
        return Err(
            "not a shared library (ELF type is not ET_DYN); build the plugin with \
                    `go build -buildmode=c-shared`"
                .into(),
        );
    }

    let is_64 = header[EI_CLASS] == ELFCLASS64;
    let little = header[EI_DATA] == ELFDATA2LSB;
    let machine = read_u16(E_MACHINE)?;
    let architecture = match (machine, is_64, little) {
        (62, true, _) => "amd64",
        (183, true, _) => "arm64",
        (243, true, _) => "riscv64",
        (21, true, true) => "ppc64le",
        (21, true, false) => "ppc64",
        (22, true, _) => "s390x",
        (258, true, _) => "loong64",
        (3, false, _) => "386",
        (40, false, _) => "arm",
        _ => return Err(format!("unsupported ELF machine {machine}")),
    };
    Ok(architecture)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(class: u8, data: u8, kind: u16, machine: u16) -> Vec<u8> {
        let mut bytes = vec![0_u8; 64];
        bytes[..4].copy_from_slice(ELF_MAGIC);
        bytes[EI_CLASS] = class;
        bytes[EI_DATA] = data;
        bytes[E_TYPE..E_TYPE + 2].copy_from_slice(&kind.to_le_bytes());
        bytes[E_MACHINE..E_MACHINE + 2].copy_from_slice(&machine.to_le_bytes());
        bytes
    }

    #[test]
    fn elf_architecture_names_goarch() {
        assert_eq!(elf_architecture(&header(2, 1, 3, 62)), Ok("amd64"));
        assert_eq!(elf_architecture(&header(2, 1, 3, 183)), Ok("arm64"));
    }

    #[test]
    fn elf_architecture_rejects_executable() {
        assert!(elf_architecture(&header(2, 1, 2, 62)).is_err());
    }

    #[test]
    fn elf_architecture_rejects_non_elf() {
        assert!(elf_architecture(b"MZ\x90\x00 not an ELF file at all").is_err());
    }
}
