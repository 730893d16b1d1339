//! ELF checks on files the tests write or build with `cc`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{compile_c, compile_shared_library, fake_plugin_source, patch_u16, TestDir};
use common::{E_MACHINE_OFFSET, E_TYPE_OFFSET};
use edgefn_loader::{check_go_plugin, ElfError, REQUIRED_EXPORTS};

const PLAIN_LIBRARY_SOURCE: &str = "int edgefn_test_add(int a, int b) { return a + b; }\n";

/// ELF machine numbers: x86-64 and AArch64.
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

/// ELF type of an executable.
const ET_EXEC: u16 = 2;

fn plain_library(dir: &TestDir) -> PathBuf {
    compile_shared_library(dir.path(), "libplain.so", PLAIN_LIBRARY_SOURCE)
}

fn elf_error(path: &Path) -> ElfError {
    match check_go_plugin(path) {
        Err(error) => error,
        Ok(info) => panic!("expected {} to be rejected, got {info:?}", path.display()),
    }
}

#[test]
fn empty_file_is_rejected() {
    let dir = TestDir::new("elf-empty");
    let path = dir.join("empty.so");
    fs::write(&path, b"").expect("write the file");

    let error = elf_error(&path);

    assert!(matches!(error, ElfError::Empty { .. }), "{error:?}");
}

#[test]
fn mach_o_file_is_named() {
    let dir = TestDir::new("elf-macho");
    let path = dir.join("plugin.dylib");
    fs::write(&path, [0xcf, 0xfa, 0xed, 0xfe, 0x0c, 0, 0, 1, 0, 0, 0, 0]).expect("write");

    let error = elf_error(&path);

    let message = error.to_string();
    assert!(matches!(error, ElfError::NotElf { .. }), "{error:?}");
    assert!(message.contains("cf fa ed fe"), "{message}");
    assert!(message.contains("Mach-O"), "{message}");
}

#[test]
fn truncated_library_is_rejected() {
    let dir = TestDir::new("elf-truncated");
    let bytes = fs::read(plain_library(&dir)).expect("read the library");
    let lengths = [40, 200, bytes.len() / 2, bytes.len() - 1];

    for length in lengths {
        let path = dir.join(&format!("cut-{length}.so"));
        fs::write(&path, &bytes[..length]).expect("write the truncated copy");

        let error = elf_error(&path);

        assert!(
            matches!(error, ElfError::Truncated { .. }),
            "length {length}: {error:?}"
        );
    }
}

#[test]
fn other_machine_is_named() {
    let dir = TestDir::new("elf-machine");
    let original = plain_library(&dir);
    let (other, other_name) = if cfg!(target_arch = "aarch64") {
        (EM_X86_64, "x86_64")
    } else {
        (EM_AARCH64, "aarch64")
    };
    let copy = dir.join("other-machine.so");
    patch_u16(&original, &copy, E_MACHINE_OFFSET, other);

    let error = elf_error(&copy);

    let ElfError::WrongMachine {
        found, expected, ..
    } = &error
    else {
        panic!("expected a machine error, got {error:?}");
    };
    assert_eq!(found, other_name);
    assert_eq!(expected, std::env::consts::ARCH);
}

#[test]
fn other_class_is_named() {
    let dir = TestDir::new("elf-class");
    let mut bytes = fs::read(plain_library(&dir)).expect("read the library");
    bytes[4] = if bytes[4] == 2 { 1 } else { 2 };
    let path = dir.join("other-class.so");
    fs::write(&path, bytes).expect("write the patched copy");

    let error = elf_error(&path);

    assert!(matches!(error, ElfError::WrongClass { .. }), "{error:?}");
}

#[test]
fn executable_is_not_shared_object() {
    let dir = TestDir::new("elf-exec");
    let program = compile_c(
        dir.path(),
        "program",
        "int main(void) { return 0; }\n",
        &["-no-pie"],
    );

    let error = elf_error(&program);

    let ElfError::NotSharedObject { found, .. } = &error else {
        panic!("expected a type error, got {error:?}");
    };
    assert!(found.contains("ET_EXEC"), "{found}");
}

#[test]
fn patched_type_is_not_shared_object() {
    let dir = TestDir::new("elf-patched-type");
    let copy = dir.join("exec-type.so");
    patch_u16(&plain_library(&dir), &copy, E_TYPE_OFFSET, ET_EXEC);

    let error = elf_error(&copy);

    assert!(
        matches!(error, ElfError::NotSharedObject { .. }),
        "{error:?}"
    );
}

#[test]
fn c_library_lists_missing_exports() {
    let dir = TestDir::new("elf-c-library");
    let path = plain_library(&dir);

    let error = elf_error(&path);

    let ElfError::NotGoPlugin { missing, .. } = &error else {
        panic!("expected a missing-exports error, got {error:?}");
    };
    assert_eq!(missing, &REQUIRED_EXPORTS.map(str::to_owned).to_vec());
    assert!(
        error.to_string().contains("envoyGoFilterOnHttpHeader"),
        "{error}"
    );
}

#[test]
fn partial_plugin_lists_only_missing_exports() {
    let dir = TestDir::new("elf-partial");
    let source = fake_plugin_source(1, "")
        .replace("void envoyGoFilterCleanUp(void) {}", "")
        .replace("void envoyGoRequestSemaDec(void *r) { (void)r; }", "");
    let path = compile_shared_library(dir.path(), "libpartial.so", &source);

    let error = elf_error(&path);

    let ElfError::NotGoPlugin { missing, .. } = &error else {
        panic!("expected a missing-exports error, got {error:?}");
    };
    assert_eq!(missing, &["envoyGoRequestSemaDec", "envoyGoFilterCleanUp"]);
}

#[test]
fn plugin_exports_and_imports_are_listed() {
    let dir = TestDir::new("elf-plugin");
    let extra = "extern int envoyGoFilterHttpContinue(void *s, int status);\n\
                 int edgefn_test_resume(void *s) { return envoyGoFilterHttpContinue(s, 2); }\n";
    let path = compile_shared_library(dir.path(), "libfake.so", &fake_plugin_source(1, extra));

    let info = check_go_plugin(&path).expect("the fake plugin passes the checks");

    let mut expected_exports = REQUIRED_EXPORTS.map(str::to_owned).to_vec();
    expected_exports.sort();
    assert_eq!(info.go_exports, expected_exports);
    assert_eq!(
        info.host_imports,
        vec!["envoyGoFilterHttpContinue".to_owned()]
    );
    assert_eq!(info.machine, std::env::consts::ARCH);
}
