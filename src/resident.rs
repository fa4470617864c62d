//! Trims the resident set once the pipeline has started: the pages of ferry's own
//! code and read-only data that starting up touched (argument and config parsing,
//! validation, building the pipeline) are handed back to the kernel.
//!
//! Executing from a 23 MB binary maps its pages 64 KiB at a time (the kernel's
//! fault-around), so starting up leaves about 10 MiB of it resident, while a running
//! pipeline uses about 4 MiB. Those pages are clean and would be reclaimed under
//! memory pressure anyway; until then they count in the process's RSS and in its
//! service's memory, which operators watch. `MADV_PAGEOUT` (Linux 5.4) drops them
//! now; what the pipeline runs is mapped again on its first use (from the page
//! cache, or read back from the binary once). Pages other processes map too (shared
//! libraries) are left as they are by the kernel.

use std::path::Path;

/// One mapping of `/proc/self/maps` that is a file's pages mapped read-only.
#[derive(Debug, PartialEq, Eq)]
struct ReadOnlyMapping {
    start: usize,
    end: usize,
}

/// The read-only (code or data) mappings of the file `exe` in `maps` (the text of
/// `/proc/self/maps`).
fn read_only_mappings_of(maps: &str, exe: &Path) -> Vec<ReadOnlyMapping> {
    maps.lines()
        .filter_map(|line| {
            let mut columns = line.split_whitespace();
            let range = columns.next()?;
            let permissions = columns.next()?;
            let path = columns.nth(3)?;
            if Path::new(path) != exe || permissions.contains('w') {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            Some(ReadOnlyMapping {
                start: usize::from_str_radix(start, 16).ok()?,
                end: usize::from_str_radix(end, 16).ok()?,
            })
        })
        .collect()
}

/// Hands back the resident pages of ferry's executable; returns the bytes of the
/// mappings advised. Best effort: where `/proc` or `MADV_PAGEOUT` is missing, nothing
/// happens.
pub fn release_startup_pages() -> usize {
    let (Ok(maps), Ok(exe)) = (
        std::fs::read_to_string("/proc/self/maps"),
        std::fs::read_link("/proc/self/exe"),
    ) else {
        return 0;
    };
    let mut advised = 0;
    for mapping in read_only_mappings_of(&maps, &exe) {
        let len = mapping.end - mapping.start;
        // SAFETY: the range is a whole mapping of this process, read from its own
        // maps; MADV_PAGEOUT only drops clean file pages, which the kernel maps again
        // from the file on their next use, so no memory the program sees changes.
        let result =
            unsafe { libc::madvise(mapping.start as *mut libc::c_void, len, libc::MADV_PAGEOUT) };
        if result == 0 {
            advised += len;
        }
    }
    advised
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_read_only_mappings_of_the_executable_are_chosen() {
        let maps = "\
55d0a0000000-55d0a0200000 r--p 00000000 fd:00 42 /usr/bin/ferry
55d0a0200000-55d0a1600000 r-xp 00200000 fd:00 42 /usr/bin/ferry
55d0a1600000-55d0a1700000 rw-p 01600000 fd:00 42 /usr/bin/ferry
7f0000000000-7f0000100000 r-xp 00000000 fd:00 7 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000200000-7f0000300000 rw-p 00000000 00:00 0
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0 [stack]
";
        assert_eq!(
            read_only_mappings_of(maps, Path::new("/usr/bin/ferry")),
            [
                ReadOnlyMapping {
                    start: 0x55d0a0000000,
                    end: 0x55d0a0200000
                },
                ReadOnlyMapping {
                    start: 0x55d0a0200000,
                    end: 0x55d0a1600000
                },
            ]
        );
    }

    #[test]
    fn the_running_test_binary_can_release_its_pages_and_keep_running() {
        // The test binary's own code: advised, then run again from the file.
        assert!(release_startup_pages() > 0);
        assert_eq!(
            read_only_mappings_of("", Path::new("/nowhere")),
            Vec::<ReadOnlyMapping>::new()
        );
    }
}
