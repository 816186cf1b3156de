/*
 * airlock-wal-push: the fast path of `airlock wal-push` for PostgreSQL's archive_command.
 *
 *   archive_command = '/opt/airlock/dist/native/airlock-wal-push %p --spool /var/spool/airlock/wal'
 *
 * PostgreSQL runs archive_command once per 16 MiB of WAL and waits for it. Starting Node alone costs
 * as much as pgBackRest's whole archive-push, so the common case, a new file pushed into the spool,
 * is done here: the same spool protocol as agent/spool.ts (temporary name, fsync, hard link that
 * never replaces, fsync the folder, then the sha256 sidecar the same way).
 *
 * Everything else goes to the reference implementation, `airlock wal-push` in Node, with the same
 * arguments: any other option (--config, --help), a name that is not a WAL file name, a file the
 * spool already holds (a retry, to be compared), a segment whose page magic is not a supported
 * PostgreSQL major's (refused there), and every failure, after this program has taken back what it
 * wrote. The Node side then does the work again and reports it with its typed error,
 * hint and exit code (spool-full, wal-conflict, not-found, ...). So this file decides nothing that
 * the Node side does not decide the same way, and it never prints an error of its own.
 *
 * Built by scripts/build-native.sh (cc, libcrypto), which compiles in AIRLOCK_NODE, the node that built it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef AIRLOCK_NODE
#define AIRLOCK_NODE "/usr/bin/node"
#endif

#define CHUNK (1024 * 1024)
#define ALIGN 4096
/* a WAL segment is at most 1 GiB (agent/spool.ts, MAX_SPOOL_FILE) */
#define MAX_FILE (1024L * 1024 * 1024)

static int argc_saved;
static char **argv_saved;

/*
 * Runs `airlock wal-push` with this program's arguments; returns only when that cannot start. The
 * CLI is found beside this program (dist/native/ -> dist/agent/cli/main.js), so a copied or moved
 * dist/ hands over to its own copy; node is the one that built this program, else node on PATH.
 */
static int hand_over(void) {
  char main_js[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", main_js, sizeof main_js - 1);
  char *cut = NULL;
  if (n > 0) {
    main_js[n] = '\0';
    cut = strstr(main_js, "/native/airlock-wal-push");
  }
  const char *rest = "/agent/cli/main.js";
  if (cut == NULL || (size_t)(cut - main_js) + strlen(rest) >= sizeof main_js) {
    fprintf(stderr, "airlock: error: cannot find the airlock cli beside this program\n");
    fprintf(stderr, "airlock: hint: run airlock-wal-push from its place in dist/native/, or set archive_command to run `airlock wal-push`\n");
    return 70;
  }
  strcpy(cut, rest);
  char **args = calloc((size_t)argc_saved + 3, sizeof(char *));
  if (args == NULL) return 70;
  args[0] = AIRLOCK_NODE;
  args[1] = main_js;
  args[2] = "wal-push";
  for (int i = 1; i < argc_saved; i++) args[i + 2] = argv_saved[i];
  execv(args[0], args);
  args[0] = "node";
  execvp(args[0], args);
  fprintf(stderr, "airlock: error: cannot start node %s: %s\n", main_js, strerror(errno));
  fprintf(stderr, "airlock: hint: install node 20 or newer where archive_command finds it (PATH), or rebuild airlock\n");
  return 70; /* EXIT.internal: postgresql keeps the file and retries */
}

static int hex_upper(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'F'))) return 0;
  return 1;
}

/*
 * xlp_magic of the PostgreSQL majors airlock supports, as agent/postgres/wal.ts WAL_MAGIC
 * lists them (13 to 17): a segment with another is handed to Node, which refuses it with bad-wal.
 */
static const unsigned short supported_magic[] = {0xD106, 0xD10D, 0xD110, 0xD113, 0xD116};

static int known_magic(const unsigned char *page) {
  unsigned short m = (unsigned short)(page[0] | page[1] << 8); /* little-endian, as the server writes it */
  for (size_t i = 0; i < sizeof supported_magic / sizeof supported_magic[0]; i++)
    if (m == supported_magic[i]) return 1;
  return 0;
}

/* A timeline field: eight upper-case hex digits, not all zero. */
static int timeline(const char *s) { return hex_upper(s, 8) && strncmp(s, "00000000", 8) != 0; }

/*
 * True for the names agent/postgres/wal.ts parseWalFileName accepts: a segment, a
 * .partial segment, a .history file, a .backup file. Anything else goes to Node for its error.
 */
static int wal_name(const char *n) {
  size_t len = strlen(n);
  if (len == 24) return timeline(n) && hex_upper(n, 24);
  if (len == 32 && strcmp(n + 24, ".partial") == 0) return timeline(n) && hex_upper(n, 24);
  if (len == 16 && strcmp(n + 8, ".history") == 0) return timeline(n);
  if (len == 40 && n[24] == '.' && strcmp(n + 33, ".backup") == 0) return timeline(n) && hex_upper(n, 24) && hex_upper(n + 25, 8);
  return 0;
}

static int fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  int r = fsync(fd);
  close(fd);
  return r;
}

static int write_all(int fd, const unsigned char *p, size_t n, off_t at) {
  while (n > 0) {
    ssize_t w = pwrite(fd, p, n, at);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (w == 0) {
      errno = ENOSPC;
      return -1;
    }
    p += w;
    n -= (size_t)w;
    at += w;
  }
  return 0;
}

/* A new temporary name in the spool for `name`, as manifests/atomic.ts makes them: .<name>.<12 hex>.tmp */
static int temp_name(char *out, size_t size, const char *spool, const char *name) {
  unsigned char r[6];
  if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) return -1;
  int n = snprintf(out, size, "%s/.%s.%02x%02x%02x%02x%02x%02x.tmp", spool, name, r[0], r[1], r[2], r[3], r[4], r[5]);
  return n > 0 && (size_t)n < size ? 0 : -1;
}

/*
 * Copies `source` into a new temporary file in the spool, fsynced, past the page cache while the
 * file system takes O_DIRECT; puts the sha256 in `hex`. With `segment`, a first page without a
 * supported magic fails the copy. Returns 0, or -1 with the temporary file already removed.
 */
static int copy_hashed(const char *source, const char *tmp, int segment, char hex[65]) {
  int in = open(source, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (in < 0) return -1;
  struct stat st;
  if (fstat(in, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_FILE) {
    close(in);
    return -1;
  }
  int direct = 1;
  int out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_DIRECT, 0640);
  if (out < 0 && errno == EINVAL) {
    /* a file system without O_DIRECT (ramfs, older tmpfs) refuses it after creating the file */
    unlink(tmp);
    direct = 0;
    out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  }
  if (out < 0) {
    close(in);
    return -1;
  }
  unsigned char *buf = NULL;
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  int ok = md != NULL && posix_memalign((void **)&buf, ALIGN, CHUNK) == 0 && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
  off_t at = 0;
  while (ok) {
    ssize_t n = read(in, buf, CHUNK);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) ok = 0;
    if (n <= 0) break;
    if (at + n > MAX_FILE || (segment && at == 0 && n >= 2 && !known_magic(buf)) || EVP_DigestUpdate(md, buf, (size_t)n) != 1) {
      ok = 0;
      break;
    }
    /* an unaligned length (the tail of a small file) cannot go past the cache */
    if (direct && n % ALIGN != 0) {
      direct = 0;
      if (fcntl(out, F_SETFL, fcntl(out, F_GETFL) & ~O_DIRECT) != 0) ok = 0;
    }
    if (ok && write_all(out, buf, (size_t)n, at) != 0) {
      if (!direct || errno != EINVAL) {
        ok = 0;
        break;
      }
      /* the file system refused O_DIRECT at the write: go on through the page cache */
      direct = 0;
      ok = fcntl(out, F_SETFL, fcntl(out, F_GETFL) & ~O_DIRECT) == 0 && write_all(out, buf, (size_t)n, at) == 0;
    }
    at += n;
  }
  unsigned char digest[32];
  unsigned int len = 0;
  if (ok) ok = EVP_DigestFinal_ex(md, digest, &len) == 1 && len == 32;
  if (ok) ok = fsync(out) == 0;
  if (close(out) != 0) ok = 0;
  close(in);
  free(buf);
  EVP_MD_CTX_free(md);
  if (!ok) {
    unlink(tmp);
    return -1;
  }
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", digest[i]);
  return 0;
}

/* Writes the sidecar `<sha256>  <name>\n` under a temporary name, fsynced, then renames it into place. */
static int write_sidecar(const char *spool, const char *name, const char *sidecar, const char *hex) {
  char tmp[PATH_MAX], text[128];
  if (temp_name(tmp, sizeof tmp, spool, strrchr(sidecar, '/') + 1) != 0) return -1;
  int n = snprintf(text, sizeof text, "%s  %s\n", hex, name);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  if (fd < 0) return -1;
  int ok = write_all(fd, (const unsigned char *)text, (size_t)n, 0) == 0 && fsync(fd) == 0;
  if (close(fd) != 0) ok = 0;
  if (ok) ok = rename(tmp, sidecar) == 0;
  if (!ok) {
    unlink(tmp);
    return -1;
  }
  return fsync_dir(spool);
}

int main(int argc, char **argv) {
  argc_saved = argc;
  argv_saved = argv;
  const char *source = NULL;
  const char *spool = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--spool") == 0 && i + 1 < argc && spool == NULL) spool = argv[++i];
    else if (strncmp(a, "--spool=", 8) == 0 && spool == NULL) spool = a + 8;
    else if (a[0] != '-' && source == NULL) source = a;
    else return hand_over(); /* --config, --help, anything unusual */
  }
  if (spool == NULL) spool = getenv("AIRLOCK_SPOOL");
  if (source == NULL || spool == NULL || spool[0] == '\0') return hand_over();

  const char *slash = strrchr(source, '/');
  const char *name = slash ? slash + 1 : source;
  if (!wal_name(name)) return hand_over();
  char final[PATH_MAX], sidecar[PATH_MAX], tmp[PATH_MAX];
  if (snprintf(final, sizeof final, "%s/%s", spool, name) >= (int)sizeof final) return hand_over();
  if (snprintf(sidecar, sizeof sidecar, "%s.sha256", final) >= (int)sizeof sidecar) return hand_over();
  struct stat st;
  /* a retry of a file already spooled is compared, by Node */
  if (lstat(final, &st) == 0 || errno != ENOENT) return hand_over();
  if (temp_name(tmp, sizeof tmp, spool, name) != 0) return hand_over();

  char hex[65];
  size_t len = strlen(name);
  if (copy_hashed(source, tmp, len == 24 || len == 32, hex) != 0) return hand_over();
  /* a hard link never replaces: another push of this name that got there first wins, and Node compares */
  int linked = link(tmp, final) == 0;
  unlink(tmp);
  if (!linked) return hand_over();
  if (fsync_dir(spool) != 0 || write_sidecar(spool, name, sidecar, hex) != 0) {
    /* take the file back too, so the spool shows no half push; Node starts it again */
    unlink(sidecar);
    unlink(final);
    return hand_over();
  }
  return 0;
}
