//! The users file (src/auth/passwd.rs): whatever `UsersFile::parse` accepts
//! must write back (`to_text`) to a file that parses to the same users, and
//! a user added with `set_password` (as `letterbox user add` does) must be
//! found again after a save and reload. The input is the file; its last
//! line, if it has no line end, doubles as the name to add.
#![no_main]

use letterbox::auth::{validate_name, UsersFile};
use libfuzzer_sys::fuzz_target;

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(file) = UsersFile::parse(text) {
        for name in file.names() {
            assert!(validate_name(name).is_ok(), "{name:?}");
            assert!(file.get(name).is_some(), "{name:?}");
        }
        let written = file.to_text();
        let reread = UsersFile::parse(&written).unwrap_or_else(|e| panic!("{written:?}: {e}"));
        assert_eq!(reread, file, "{written:?}");
    }

    let name = text.rsplit('\n').next().unwrap_or_default();
    let mut file =
        UsersFile::parse(text.rsplit_once('\n').map_or("", |(head, _)| head)).unwrap_or_default();
    if let Ok(_added) = file.set_password(name, HASH) {
        let written = file.to_text();
        let reread = UsersFile::parse(&written).unwrap_or_else(|e| panic!("{written:?}: {e}"));
        let user = reread
            .get(name)
            .unwrap_or_else(|| panic!("{name:?} lost in {written:?}"));
        assert_eq!(user.password, HASH);
        assert_eq!(reread.names().count(), file.names().count());
        let mut file = reread;
        assert!(file.remove(name), "{name:?} cannot be removed");
        assert!(file.get(name).is_none());
    }
});
