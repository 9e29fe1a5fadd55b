//! A real LDAP directory for the sign-in tests: Debian's `slapd` (OpenLDAP), started by the
//! test on a free loopback port with a directory of its own (`dc=example,dc=com`): people under
//! `ou=people` (inetOrgPerson, with `uid` and a password), the support group `cn=support` under
//! `ou=groups` (posixGroup, its members by `memberUid`), and a search account.

use std::{path::Path, process::Stdio};

use tokio::process::{Child, Command};

const SLAPD: &str = "/usr/sbin/slapd";
const SLAPADD: &str = "/usr/sbin/slapadd";

/// The search account of the directory, and its password.
pub const SEARCH_DN: &str = "cn=admin,dc=example,dc=com";
pub const SEARCH_PASSWORD: &str = "directory-admin-secret";
pub const PEOPLE: &str = "ou=people,dc=example,dc=com";
pub const GROUPS: &str = "ou=groups,dc=example,dc=com";

/// A person of the directory.
pub struct Person<'a> {
    pub uid: &'a str,
    pub password: &'a str,
    /// In the support group.
    pub support: bool,
}

/// A running slapd; killed on drop.
pub struct TestLdap {
    pub url: String,
    _child: Child,
    _dir: tempfile::TempDir,
}

impl TestLdap {
    /// A directory of `people`; `None` (after [`crate::service_missing`]) without slapd.
    pub async fn start(people: &[Person<'_>]) -> Option<Self> {
        if !Path::new(SLAPD).exists() || !Path::new(SLAPADD).exists() {
            crate::service_missing("slapd", "no /usr/sbin/slapd: apt-get install slapd");
            return None;
        }
        let dir = tempfile::tempdir().expect("a directory for slapd");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("slapd's database directory");
        let conf = dir.path().join("slapd.conf");
        std::fs::write(
            &conf,
            format!(
                "include /etc/ldap/schema/core.schema\n\
                 include /etc/ldap/schema/cosine.schema\n\
                 include /etc/ldap/schema/nis.schema\n\
                 include /etc/ldap/schema/inetorgperson.schema\n\
                 pidfile {pid}\n\
                 modulepath /usr/lib/ldap\n\
                 moduleload back_mdb\n\
                 database mdb\n\
                 maxsize 10485760\n\
                 suffix \"dc=example,dc=com\"\n\
                 rootdn \"{SEARCH_DN}\"\n\
                 rootpw {SEARCH_PASSWORD}\n\
                 directory {data}\n",
                pid = dir.path().join("slapd.pid").display(),
                data = data.display(),
            ),
        )
        .expect("write slapd.conf");
        let mut ldif = String::from(
            "dn: dc=example,dc=com\nobjectClass: dcObject\nobjectClass: organization\n\
             o: Example\ndc: example\n\n\
             dn: ou=people,dc=example,dc=com\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: ou=groups,dc=example,dc=com\nobjectClass: organizationalUnit\nou: groups\n\n\
             dn: cn=support,ou=groups,dc=example,dc=com\nobjectClass: posixGroup\ncn: support\n\
             gidNumber: 5000\n",
        );
        for p in people.iter().filter(|p| p.support) {
            ldif.push_str(&format!("memberUid: {}\n", p.uid));
        }
        for p in people {
            ldif.push_str(&format!(
                "\ndn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\n\
                 sn: {uid}\nuserPassword: {password}\n",
                uid = p.uid,
                password = p.password
            ));
        }
        let ldif_path = dir.path().join("data.ldif");
        std::fs::write(&ldif_path, ldif).expect("write the directory's entries");
        let added = Command::new(SLAPADD)
            .arg("-f")
            .arg(&conf)
            .arg("-l")
            .arg(&ldif_path)
            .output()
            .await
            .expect("run slapadd");
        assert!(
            added.status.success(),
            "slapadd: {}",
            String::from_utf8_lossy(&added.stderr)
        );
        let port = crate::cluster::free_port();
        let url = format!("ldap://127.0.0.1:{port}");
        // `-d 0`: in the foreground (killed with the test), logging nothing.
        let child = Command::new(SLAPD)
            .arg("-f")
            .arg(&conf)
            .arg("-h")
            .arg(format!("{url}/"))
            .args(["-d", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start slapd");
        crate::cluster::wait_for_port(port).await;
        Some(Self {
            url,
            _child: child,
            _dir: dir,
        })
    }
}
