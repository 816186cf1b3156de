/*
 * RESTORE.txt: the steps to check and open this one bundle with stock tools only (OpenSSH's
 * ssh-keygen, coreutils' sha256sum, age, zstd, GNU tar), for a restore operator who has neither
 * airlock nor network, possibly years later. Generated from the manifest, so the names are exact.
 */
import { INDEX, INNER_MANIFEST } from '../../manifests/inner.js';
import { bundleName, type Manifest } from '../../manifests/manifest.js';
import { BUNDLE_NAMESPACE } from '../../manifests/sshsig.js';
import { RECOVERY_INDEX } from '../../manifests/recovery.js';
import { SUMS, SUMS_SIG } from '../../manifests/sums.js';

export function restoreText(m: Manifest, recovery = false): string {
  const name = bundleName(m.site, m.seq);
  const volumes = m.payload.volumes;
  const first = volumes[0]?.name ?? 'payload.000';
  const last = volumes.at(-1)?.name ?? first;
  const decrypt =
    m.payload.compression === 'zstd'
      ? `cat ${name}/payload.* | age -d -i key.txt | zstd -d -q | tar -x -f - -C restored`
      : `cat ${name}/payload.* | age -d -i key.txt | tar -x -f - -C restored`;
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
of one recipient above. Tools: ssh-keygen, sha256sum, age, ${m.payload.compression === 'zstd' ? 'zstd, ' : ''}tar.
Run every step from the folder that holds ${name}/ and stop at the first error.

1. Check the signature (proves who made the bundle; anyone can encrypt to a
   public recipient, so never skip this):

   ssh-keygen -Y verify -f allowed_signers -I ${m.site} -n ${BUNDLE_NAMESPACE} \\
     -s ${name}/${SUMS_SIG} < ${name}/${SUMS}

   It must print: Good "${BUNDLE_NAMESPACE}" signature for ${m.site} ...

2. Check every file against the signed list:

   (cd ${name} && sha256sum --strict -c ${SUMS})

   Every line must say OK. Also check that the folder holds no other files
   than those listed, ${SUMS} and ${SUMS_SIG}.${recovery ? `

   If only payload volumes fail, the bundle's recovery data (par2, Debian
   package "par2") may rebuild them. Copy the whole folder elsewhere (never
   repair the only copy), then in the copy:

   par2 repair -p ${RECOVERY_INDEX} -- payload.*

   (-p removes par2's backups, which cat payload.* would otherwise read)
   and run this step again on the copy: it must now say OK for every volume.` : ''}

3. Decrypt and unpack into a new, empty folder:

   set -o pipefail
   mkdir restored
   ${decrypt}

   The command must end without any error message and with status 0
   (echo $? prints 0). If it fails, delete the folder "restored": its contents
   are incomplete.

4. Check the unpacked files against the inner manifest:

   (cd restored && sha256sum --strict -c ${INNER_MANIFEST})

5. What the files are: restored/${INDEX} has one JSON line per item. Its first
   line names the site and bundle. A line with "path" names a file in
   "restored"; "source" is where it came from, with its mode, owner (uid, gid)
   and modification time. Lines without "path" describe folders, symbolic links
   ("target") and hard links, which you recreate by hand, e.g.:

   grep '"type":"file"' restored/${INDEX}

   Configuration files are under restored/files/, numbered; copy each to its
   "source" path and set its mode and owner as the line says.
${m.coverage?.postgres ? postgresSteps(m) : ''}`;
}

/** Step 6 for a bundle that carries PostgreSQL: lay down the base backup, replay WAL, or load a dump. */
function postgresSteps(m: Manifest): string {
  const pg = m.coverage?.postgres;
  if (!pg) return '';
  const point = pg.restorePoint;
  const wal = pg.wal.map((r) => `${r.first} to ${r.last}`).join(', ') || 'none';
  return `
6. PostgreSQL ${pg.major} (system identifier ${pg.systemIdentifier}). This bundle holds
   ${pg.base ? `a base backup (WAL ${pg.base.startLsn} to ${pg.base.stopLsn}, ended ${pg.base.stopTime}), ` : ''}${pg.dumps > 0 ? `${pg.dumps} logical dump(s), ` : ''}WAL segments ${wal},
   up to the restore point ${point ? `${point.name} (${point.time})` : '(none)'}.
   restored/pg/info.json says what the server was (version, collations, C library).
${pg.base ? `
   Point in time, from this bundle's base backup (as the database's OS user):

   mkdir -m 700 PGDATA
   cat restored/pg/base/* | tar -x -f - -C PGDATA     # the numbered parts, in order
   mkdir WALDIR
   cp restored/pg/wal/* WALDIR/     # and, in order, the pg/wal/ files of every later bundle
   cat >> PGDATA/postgresql.auto.conf <<'EOF'
   restore_command = 'cp WALDIR/%f %p'
   recovery_target_name = '${point?.name ?? 'NAME'}'    # or recovery_target_time = '...+00'
   recovery_target_action = 'promote'
   archive_mode = off
   listen_addresses = 'localhost'
   port = 5433
   EOF
   touch PGDATA/recovery.signal
   pg_ctl -D PGDATA -l PGDATA/restore.log start

   Step 4 checked every WAL file. Replace PGDATA and WALDIR by real paths; a
   restored server must never archive into the production spool.
` : `
   WAL only: replay it on top of the base backup of an earlier bundle (see that
   bundle's RESTORE.txt); copy restored/pg/wal/* into the same WALDIR.
`}${pg.dumps > 0 ? `
   A logical dump: grep '"pg-dump-end"' restored/${INDEX} names the database of
   each restored/pg/dump/NNN/ folder. Into an existing empty database:

   cat restored/pg/dump/NNN/* | pg_restore -d DBNAME --no-owner
   cat restored/pg/globals/* | psql -d postgres      # roles, first, if needed
` : ''}`;
}
