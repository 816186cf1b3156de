/*
 * RESTORE.txt: the steps to check and open this one bundle with stock tools only (OpenSSH's
 * ssh-keygen, coreutils' sha256sum, age, zstd, GNU tar, jq for files, PostgreSQL's own programs), for
 * a restore operator who has neither airlock nor network, possibly years later. Generated from the
 * manifest, so the names are exact. The commands are the lines indented by six spaces, meant to be
 * pasted as they are into one bash session, in order (a test runs them so); no here-document, whose
 * end marker would be indented too.
 */
import { INNER_MANIFEST } from '../../manifests/inner.js';
import { INDEX } from '../../manifests/records.js';
import type { Tablespace } from '../../manifests/coverage.js';
import { RESTORE_FILE, bundleName, volumeName, type Manifest } from '../../manifests/manifest.js';
import { shellQuote } from '../../manifests/shell.js';
import { BUNDLE_NAMESPACE } from '../../manifests/sshsig.js';
import { RECOVERY_INDEX } from '../../manifests/recovery.js';
import { SUMS, SUMS_SIG } from '../../manifests/sums.js';

export function restoreText(m: Manifest, recovery = false): string {
  const name = bundleName(m.site, m.seq);
  const out = `${name}.restored`;
  // a site id is letters, digits and dashes, so these are written as they are; quoted all the same,
  // since the commands are pasted into a shell
  const qName = shellQuote(name);
  const qOut = shellQuote(out);
  const qSite = shellQuote(m.site);
  const volumes = m.payload.volumes;
  const first = volumes[0]?.name ?? volumeName(0, 1);
  const last = volumes.at(-1)?.name ?? first;
  const decrypt =
    m.payload.compression === 'zstd'
      ? `cat ${qName}/payload.* | age -d -i key.txt | zstd -d -q | tar -x -f - -C ${qOut}`
      : `cat ${qName}/payload.* | age -d -i key.txt | tar -x -f - -C ${qOut}`;
  const files = m.contents.files > 0;
  const pg = m.coverage?.postgres;
  const tools = [
    'ssh-keygen',
    'sha256sum',
    'age',
    ...(m.payload.compression === 'zstd' ? ['zstd'] : []),
    'tar',
    ...(files ? ['jq'] : []),
    ...(pg ? ['pg_ctl (PostgreSQL)'] : []),
  ];
  return `RESTORING BUNDLE ${name}
${'='.repeat(18 + name.length)}

Site ${m.site}, bundle number ${m.seq}, made ${m.created} by ${m.tool}.
Signed by the SSH key ${m.signer}.
Encrypted with age to ${m.recipients.length} recipient(s):
${m.recipients.map((r) => `  ${r}`).join('\n')}
Payload: ${volumes.length} volume(s), ${first} to ${last}, ${m.payload.size} bytes in all,
${m.payload.compression === 'zstd' ? 'a zstd-compressed' : 'an uncompressed'} tar inside.
${m.prev ? `It follows the bundle whose ${SUMS} has sha256 ${m.prev}.` : 'It is the first bundle of its site.'}

You need: this folder, the file allowed_signers from your auditor (a line
"${m.site} ssh-ed25519 AAAA..."), and, to open it, the age identity (key.txt)
of one recipient above. Tools: ${tools.join(', ')}.
Run every step in bash, from the folder that holds ${name}/, key.txt and
allowed_signers, and stop at the first error. The commands are the lines
indented by six spaces; paste them as they are.

1. Check the signature (proves who made the bundle; anyone can encrypt to a
   public recipient, so never skip this):

      ssh-keygen -Y verify -f allowed_signers -I ${qSite} -n ${BUNDLE_NAMESPACE} \\
        -s ${qName}/${SUMS_SIG} < ${qName}/${SUMS}

   It must print: Good "${BUNDLE_NAMESPACE}" signature for ${m.site} ...

2. Check every file against the signed list:

      (cd ${qName} && sha256sum --strict -c ${SUMS})

   Every line must say OK. Also check that the folder holds no other files
   than those listed, ${SUMS} and ${SUMS_SIG}.${
     recovery
       ? `

   If only payload volumes fail, the bundle's recovery data (par2, Debian
   package "par2") may rebuild them. Copy the whole folder elsewhere (never
   repair the only copy), then in the copy run
   par2 repair -p ${RECOVERY_INDEX} -- payload.*
   (-p removes par2's backups, which cat payload.* would otherwise read)
   and this step again on the copy: it must now say OK for every volume.`
       : ''
   }

3. Decrypt and unpack into a new, empty folder, ${out}:

      set -o pipefail
      mkdir -m 700 ${qOut}
      ${decrypt}

   The last command must end without any error message and with status 0
   (echo $? prints 0). If it fails, delete the folder ${out}: its contents
   are incomplete.

4. Check the unpacked files against the inner manifest:

      (cd ${qOut} && sha256sum --strict -c ${INNER_MANIFEST})

5. What the files are: ${out}/${INDEX} has one JSON line per item. Its
   first line names the site and bundle. A line with "path" names a file in
   ${out}; "source" is where it came from, with its mode, owner (uid, gid)
   and modification time. Lines without "path" describe folders, symbolic links
   ("target") and hard links.
${files ? filesSteps(qOut) : ''}${pg ? postgresSteps(m, out, qOut) : ''}`;
}

/**
 * Step 5's commands for a bundle with configuration files: recreate them under a new folder with
 * their modes, owners and times, as `airlock restore files` does. Names pass NUL-separated, so any
 * byte in a name is safe; owners before modes (a chown clears setuid and setgid); folder times last,
 * since creating anything inside a folder changes its time.
 */
function filesSteps(qOut: string): string {
  const each = (select: string, fields: string, body: string) => `      jq -j '${select} | ${fields}' ${qOut}/${INDEX} |
        while IFS= read -r -d '' a && IFS= read -r -d '' b; do ${body}; done`;
  return `
   To put the files back as they were, under a new folder FILES (as root, to
   keep owners): each "source" /a/b becomes FILES/a/b. Then copy what you need
   into place.

      FILES="$PWD/files"
      mkdir -m 700 "$FILES"
${each('select(.type == "dir")', '.source, "\\u0000", .source, "\\u0000"', 'mkdir -p -- "$FILES$a"')}
${each('select(.type == "file")', '.path, "\\u0000", .source, "\\u0000"', `mkdir -p -- "$FILES$(dirname -- "$b")" && cp -- ${qOut}/"$a" "$FILES$b"`)}
${each('select(.type == "symlink")', '.target, "\\u0000", .source, "\\u0000"', 'mkdir -p -- "$FILES$(dirname -- "$b")" && ln -s -- "$a" "$FILES$b"')}
${each('select(.type == "hardlink")', '.target, "\\u0000", .source, "\\u0000"', 'mkdir -p -- "$FILES$(dirname -- "$b")" && ln -- "$FILES$a" "$FILES$b"')}
${each('select(.type == "dir" or .type == "file" or .type == "symlink")', '"\\(.uid):\\(.gid)", "\\u0000", .source, "\\u0000"', 'chown -h -- "$a" "$FILES$b"')}
${each('select(.type == "dir" or .type == "file")', '.mode, "\\u0000", .source, "\\u0000"', 'chmod -- "$a" "$FILES$b"')}
${each('select(.type == "file" or .type == "symlink")', '.mtime, "\\u0000", .source, "\\u0000"', 'touch -h -d "$a" -- "$FILES$b"')}
${each('select(.type == "dir")', '.mtime, "\\u0000", .source, "\\u0000"', 'touch -d "$a" -- "$FILES$b"')}

   Lines of type "special" (devices, pipes, sockets) are not recreated.
`;
}

/**
 * Step 6a's end for a base backup with tablespaces: each one's tar into a folder of its own under
 * TBLSPC, a link to it in pg_tblspc, and tablespace_map removed (recovery would otherwise link the
 * source's folders). Names and locations appear only in prose, JSON-quoted, so no byte of them can
 * start a command line.
 */
function tablespaceSteps(spaces: readonly Tablespace[], out: string): string {
  return `
   The base backup has ${spaces.length} tablespace(s), each in its own tar, by OID:
${spaces.map((t) => `   ${t.oid}: name ${JSON.stringify(t.name)}, on the source in ${JSON.stringify(t.location)}`).join('\n')}
   Each goes into a folder of its own under TBLSPC (move it elsewhere before
   the server starts if you like, and change its link), linked from the data
   folder's pg_tblspc; tablespace_map is removed, since recovery would
   otherwise link the source's folders:

      mkdir -m 700 "$TBLSPC"
${spaces
  .map(
    (t) => `      mkdir -m 700 "$TBLSPC/${t.oid}" && cat ${out}/pg/tblspc/${t.oid}/* | tar -x -f - -C "$TBLSPC/${t.oid}"
      ln -s "$TBLSPC/${t.oid}" "$PGDATA/pg_tblspc/${t.oid}"`,
  )
  .join('\n')}
      rm "$PGDATA/tablespace_map"
`;
}

/** The source settings a recovering server needs at least as high as the source had them. */
const AT_LEAST = ['max_connections', 'max_worker_processes', 'max_wal_senders', 'max_prepared_transactions', 'max_locks_per_transaction'];

/**
 * Step 6 for a bundle that carries PostgreSQL: with a base backup, lay it down (6a), take the WAL of
 * every later bundle (6b, their own step 6), start and wait for the promotion (6c); WAL only, add
 * this bundle's WAL to a restore begun from an earlier base backup and move the target to it. The
 * server never reads the source's configuration files (they could run commands): as
 * `airlock restore pg` does, they are moved aside and postgresql.conf is written anew.
 */
function postgresSteps(m: Manifest, out: string, qOut: string): string {
  const pg = m.coverage?.postgres;
  if (!pg) return '';
  const point = pg.restorePoint;
  const wal = pg.wal.map((r) => `${r.first} to ${r.last}`).join(', ') || 'none';
  const spaces = pg.base?.tablespaces ?? [];
  const target = `      printf '%s\\n' "recovery_target_name = '${point?.name ?? 'NAME'}'" >> "$PGDATA/postgresql.conf"`;
  const intro = `
6. PostgreSQL ${pg.major} (system identifier ${pg.systemIdentifier}). This bundle holds
   ${pg.base ? `a base backup (WAL ${pg.base.startLsn} to ${pg.base.stopLsn}, consistent from ${pg.base.stopTime}), ` : ''}${pg.dumps > 0 ? `${pg.dumps} logical dump(s), ` : ''}WAL segments ${wal},
   up to the restore point ${point ? `${point.name} (${point.time})` : '(none)'}.
   ${out}/pg/info.json says what the server was (version, collations, C library).
`;
  const base = pg.base
    ? `
   To restore the database to a point in time, as root: this bundle's base
   backup, then the WAL of every later bundle of the site you have, up to the
   newest one's restore point. Set where the data goes (folders that do not
   exist yet, whose parent folders the server's user can enter, with no space
   or quote in their names), the server's OS user, a free port, and the folder
   of the PostgreSQL ${pg.major} programs (Debian: package postgresql-${pg.major}):

      PGDATA="$PWD/pgdata" WALDIR="$PWD/pgdata.wal" DBUSER=postgres PORT=5433
      PGBIN=/usr/lib/postgresql/${pg.major}/bin
${spaces.length > 0 ? '      TBLSPC="$PWD/tblspc"\n' : ''}
   6a. Lay down the base backup and this bundle's WAL. The source's
   configuration files go to PGDATA/source-config (review them: they are not
   read, since they could run programs), and a new postgresql.conf holds the
   recovery settings; the server archives nothing and listens on this host only:

      mkdir -m 700 "$PGDATA" "$WALDIR" "$PGDATA/source-config"
      cat ${qOut}/pg/base/* | tar -x -f - -C "$PGDATA"
      cp ${qOut}/pg/wal/* "$WALDIR"/
      for f in postgresql.conf postgresql.auto.conf; do if [ -e "$PGDATA/$f" ]; then mv "$PGDATA/$f" "$PGDATA/source-config/"; fi; done
      cp ${out}/pg/config/* "$PGDATA/source-config/" 2>/dev/null || true
      rm -f "$PGDATA/postmaster.pid" "$PGDATA/postmaster.opts" "$PGDATA/standby.signal"
      [ -e "$PGDATA/pg_hba.conf" ] || printf '%s\\n' 'local all all peer' > "$PGDATA/pg_hba.conf"
      [ -e "$PGDATA/pg_ident.conf" ] || : > "$PGDATA/pg_ident.conf"
      printf '%s\\n' "restore_command = 'cp $WALDIR/%f %p'" "recovery_target_action = 'promote'" \\
        "recovery_target_timeline = 'latest'" 'archive_mode = off' "listen_addresses = 'localhost'" \\
        "port = $PORT" "unix_socket_directories = '$PGDATA'" > "$PGDATA/postgresql.conf"
      grep -hE '^[[:space:]]*(${AT_LEAST.join('|')})[[:space:]]*=[[:space:]]*[0-9]+[[:space:]]*$' "$PGDATA"/source-config/* >> "$PGDATA/postgresql.conf" || true
${target}
      touch "$PGDATA/recovery.signal"
${spaces.length > 0 ? tablespaceSteps(spaces, out) : ''}
   (pg/config/ holds the configuration files the source kept outside its data folder, numbered; the grep carries over the
   settings recovery needs at least as high as the source had them.) The
   target is this bundle's restore point. To stop at a time instead, run
   sed -i '/^recovery_target_name/d' "$PGDATA/postgresql.conf" after 6b and
   append a line recovery_target_time = '2026-03-01 12:00:00+00' (UTC, a
   numeric offset: PostgreSQL does not read Z here).

   6b. For every later bundle of this site, in order of its number: steps 1 to
   4 and 6 of its own ${RESTORE_FILE}, in this same shell (they add its WAL and move
   the target to its restore point).

   6c. Hand the folders to the server's user, start the server and wait until
   recovery ended and it was promoted:

      chown -R "$DBUSER": "$PGDATA" "$WALDIR"${spaces.length > 0 ? ' "$TBLSPC"' : ''}
      runuser -u "$DBUSER" -- "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/restore.log" -w -t 86400 start
      until grep -q 'database system is ready to accept connections' "$PGDATA/restore.log"; do
        runuser -u "$DBUSER" -- "$PGBIN/pg_ctl" -D "$PGDATA" status > /dev/null || break
        sleep 1
      done
      grep -E 'recovery stopping|last completed transaction|selected new timeline|ready to accept connections|FATAL' "$PGDATA/restore.log"

   pg_ctl returns once the database is consistent (or fails, and says so); the
   loop then waits for the promotion, or stops when the server stopped. The
   last command shows where recovery stopped, the new timeline and "ready to
   accept connections" when it was promoted; a FATAL line says why it failed. Step 4 checked every WAL file. The server
   now accepts connections on port PORT, socket in PGDATA:
   runuser -u "$DBUSER" -- "$PGBIN/psql" -h "$PGDATA" -p "$PORT" postgres
`
    : `
   This bundle holds WAL only. It continues a restore begun from an earlier
   bundle's base backup (that bundle's ${RESTORE_FILE}, step 6a), in the same
   shell, with PGDATA and WALDIR set as there. After steps 1 to 4 of this file:

      cp ${qOut}/pg/wal/* "$WALDIR"/
${target}

   The last recovery_target_name in postgresql.conf wins. Then the next bundle,
   or, after the newest, step 6c of the base bundle's ${RESTORE_FILE}.
`;
  const dumps =
    pg.dumps > 0
      ? `
   A logical dump: grep '"pg-dump-end"' ${out}/${INDEX} names the database of
   each ${out}/pg/dump/NNN/ folder. Into an existing empty database DBNAME
   (roles first, if needed), with NNN and DBNAME replaced:
   cat ${qOut}/pg/globals/* | psql -d postgres
   cat ${qOut}/pg/dump/NNN/* | pg_restore -d DBNAME --no-owner
   pg_restore runs several jobs in parallel (--jobs N) only from a file:
   cat ${qOut}/pg/dump/NNN/* > dump.custom
   pg_restore -d DBNAME --no-owner --jobs 4 dump.custom && rm dump.custom
`
      : '';
  return intro + base + dumps;
}
