/* cmd_xray.c - strongroom xray STORE_FILE [--store STORE] [--frames] [--out FILE]
 *                             [--passphrase-file F | --extpass CMD | --recovery-key-file F]
 *
 * Decrypts one store file offline, for support, from the format codecs and
 * the keyring alone (no vault, no file engine, no FUSE): the proof that the
 * on-disk format of docs/format.md is self-contained.
 *
 *  - a ciphertext file: writes its plaintext (from the last seal's chunk map,
 *    holes as zeros) to stdout or --out; --frames instead lists every frame
 *    with its offset, type, seq, chunk index and whether it verifies.
 *  - a ".sr-dir" file: prints the directory's id, level, mode, owner and the
 *    names of its extended attributes.
 *
 * The store root is found by walking up from the file to the directory that
 * holds strongroom.conf, unless --store names it. Reads only; never writes
 * to the store.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"
#include "strongroom/format.h"

struct xr_file {
	const char *path;
	int fd;
	uint64_t size;
	const struct kr_keyring *kr;
	unsigned level;
	uint8_t file_id[FMT_ID_BYTES];
	const unsigned char *content_key;
	uint32_t chunk_size;
};

/* Read exactly n bytes at off into a malloc'd buffer, or NULL. */
static uint8_t *xr_read(const struct xr_file *x, uint64_t off, size_t n)
{
	uint8_t *b = malloc(n ? n : 1);

	if (b && pread(x->fd, b, n, (off_t)off) != (ssize_t)n) {
		free(b);
		return NULL;
	}
	return b;
}

/* Level from a hint, as the engine does. @return 0, -EBADMSG, -ENOKEY. */
static int xr_level(const struct kr_keyring *kr, const uint8_t id[FMT_ID_BYTES],
		    const uint8_t hint[FMT_HINT_BYTES], unsigned *level)
{
	const struct kr_config *cfg = kr_keyring_config(kr);
	uint8_t want[FMT_HINT_BYTES];

	for (unsigned l = 0; l < cfg->nlevels; l++) {
		fmt_level_hint(kr_vault_subkey(kr, KR_VSUB_HINT), id, l, want);
		if (sodium_memcmp(want, hint, FMT_HINT_BYTES) == 0) {
			*level = l;
			return kr_level_held(kr, l) ? 0 : -ENOKEY;
		}
	}
	return -EBADMSG;
}

static int xr_dirmeta(const struct xr_file *x)
{
	uint8_t *buf = xr_read(x, 0, (size_t)x->size), id[FMT_ID_BYTES], hint[FMT_HINT_BYTES];
	char hex[2 * FMT_ID_BYTES + 1], names[65536];
	struct fmt_dirmeta m;
	unsigned level;
	int rc;

	if (!buf)
		return -EIO;
	rc = fmt_dirmeta_peek(buf, (size_t)x->size, id, hint);
	if (rc == 0)
		rc = xr_level(x->kr, id, hint, &level);
	if (rc == 0)
		rc = fmt_dirmeta_decode(buf, (size_t)x->size, level,
					kr_level_subkey(x->kr, level, KR_SUB_META), &m);
	free(buf);
	if (rc)
		return rc;
	sodium_bin2hex(hex, sizeof hex, m.dir_id, FMT_ID_BYTES);
	printf("directory %s\nlevel %u (%s)\nmode %06o\nuid %u\ngid %u\n", hex, level,
	       kr_keyring_config(x->kr)->levels[level].name, m.mode, m.uid, m.gid);
	ssize_t nl = fmt_xattr_list(m.xattrs, m.xattrs_len, names, sizeof names);
	for (ssize_t i = 0; i < nl; i += (ssize_t)strlen(names + i) + 1)
		printf("xattr %s\n", names + i);
	free(m.xattrs);
	return 0;
}

/* List every frame from the header on; stops at the first malformed one. */
static int xr_frames(const struct xr_file *x)
{
	uint64_t pos = FMT_FILE_HEADER_BYTES;

	while (pos + FMT_FRAME_HEADER_BYTES <= x->size) {
		uint8_t hb[FMT_FRAME_HEADER_BYTES], *frame, *pt;
		struct fmt_frame_header h;
		uint64_t total;
		ssize_t n;

		if (pread(x->fd, hb, sizeof hb, (off_t)pos) != (ssize_t)sizeof hb ||
		    fmt_frame_header_decode(hb, &h)) {
			printf("%12llu  malformed frame header: torn or foreign tail\n",
			       (unsigned long long)pos);
			return 0;
		}
		total = FMT_FRAME_HEADER_BYTES + (uint64_t)h.payload_len;
		if (total > x->size - pos) {
			printf("%12llu  incomplete frame: torn tail\n", (unsigned long long)pos);
			return 0;
		}
		frame = xr_read(x, pos, (size_t)total);
		pt = malloc(h.payload_len);
		n = frame && pt ? fmt_frame_open(x->content_key, x->file_id, frame, (size_t)total, &h,
						 pt, h.payload_len)
				: -ENOMEM;
		printf("%12llu  %-5s seq %-8llu %s %-10llu len %-8llu %s\n", (unsigned long long)pos,
		       h.type == FMT_FRAME_CHUNK ? "CHUNK" : "SEAL", (unsigned long long)h.seq,
		       h.type == FMT_FRAME_CHUNK ? "chunk" : "at   ", (unsigned long long)h.arg,
		       (unsigned long long)total,
		       n < 0 ? "DOES NOT VERIFY"
			     : (h.flags & FMT_FRAME_F_COMPRESSED) ? "ok, compressed" : "ok");
		if (pt)
			sodium_memzero(pt, h.payload_len);
		free(pt);
		free(frame);
		pos += total + (h.type == FMT_FRAME_SEAL ? FMT_SEAL_LOCATOR_BYTES : 0);
	}
	return 0;
}

/* Write the plaintext of the last seal's state to out. */
static int xr_content(const struct xr_file *x, FILE *out)
{
	uint8_t loc[FMT_SEAL_LOCATOR_BYTES], *frame = NULL, *pt = NULL, *raw = NULL, *cpt = NULL;
	struct fmt_frame_header h;
	struct fmt_seal s = {0};
	uint64_t len, off, written = 0;
	ssize_t n;
	int rc = -EBADMSG;

	if (x->size < FMT_FILE_HEADER_BYTES + FMT_SEAL_LOCATOR_BYTES ||
	    pread(x->fd, loc, sizeof loc, (off_t)(x->size - sizeof loc)) != (ssize_t)sizeof loc ||
	    fmt_seal_locator_decode(loc, &len) || len > x->size - FMT_FILE_HEADER_BYTES) {
		cli_err(x->path, "does not end in a seal (unsealed after a crash? try --frames)");
		return -ENODATA;
	}
	off = x->size - len;
	frame = xr_read(x, off, (size_t)(len - FMT_SEAL_LOCATOR_BYTES));
	pt = malloc((size_t)len);
	raw = malloc(x->chunk_size);
	if (!frame || !pt || !raw)
		goto out;
	n = fmt_frame_open(x->content_key, x->file_id, frame, (size_t)(len - FMT_SEAL_LOCATOR_BYTES),
			   &h, pt, (size_t)len);
	if (n < 0 || h.type != FMT_FRAME_SEAL || h.arg != off || fmt_seal_decode(pt, (size_t)n, &s))
		goto out;
	fprintf(stderr, "size %llu, mode %06o, uid %u, gid %u, %zu chunks\n",
		(unsigned long long)s.size, s.mode, s.uid, s.gid, s.nmap);
	for (size_t i = 0; i <= s.nmap; i++) {
		uint64_t start = i < s.nmap ? s.map[i].index * x->chunk_size : s.size;
		while (written < start) { /* a hole */
			uint64_t z = start - written < x->chunk_size ? start - written : x->chunk_size;
			memset(raw, 0, (size_t)z);
			if (fwrite(raw, 1, (size_t)z, out) != z) {
				rc = -EIO;
				goto out;
			}
			written += z;
		}
		if (i == s.nmap)
			break;
		const struct fmt_chunk_ref *r = &s.map[i];
		free(frame);
		free(cpt);
		frame = xr_read(x, r->offset, r->frame_len);
		cpt = malloc(r->frame_len);
		if (!frame || !cpt)
			goto out;
		n = fmt_frame_open(x->content_key, x->file_id, frame, r->frame_len, &h, cpt, r->frame_len);
		if (n < 0 || h.type != FMT_FRAME_CHUNK || h.arg != r->index || h.seq != r->seq)
			goto out;
		n = fmt_chunk_decode(NULL, cpt, (size_t)n, h.flags & FMT_FRAME_F_COMPRESSED, raw,
				     x->chunk_size);
		if (n != (ssize_t)r->raw_len)
			goto out;
		if (fwrite(raw, 1, (size_t)n, out) != (size_t)n) {
			rc = -EIO;
			goto out;
		}
		written += (uint64_t)n;
	}
	rc = 0;
out:
	if (raw)
		sodium_memzero(raw, x->chunk_size);
	free(raw);
	free(pt);
	free(cpt);
	free(frame);
	fmt_seal_release(&s);
	return rc;
}

static int xr_file_open(struct xr_file *x)
{
	uint8_t hb[FMT_FILE_HEADER_BYTES];
	struct fmt_file_header h;
	int rc;

	if (pread(x->fd, hb, sizeof hb, 0) != (ssize_t)sizeof hb || fmt_file_header_peek(hb, &h))
		return -EUCLEAN;
	rc = xr_level(x->kr, h.file_id, h.hint, &x->level);
	if (rc == 0)
		rc = fmt_file_header_verify(hb, kr_level_subkey(x->kr, x->level, KR_SUB_META), &h);
	if (rc)
		return rc;
	memcpy(x->file_id, h.file_id, FMT_ID_BYTES);
	x->chunk_size = 1u << h.chunk_log2;
	x->content_key = kr_level_subkey(x->kr, x->level, KR_SUB_CONTENT);
	fprintf(stderr, "level %u (%s), chunk size %u, synced_end %llu\n", x->level,
		kr_keyring_config(x->kr)->levels[x->level].name, x->chunk_size,
		(unsigned long long)h.synced_end);
	return 0;
}

/* The directory above path that holds strongroom.conf. */
static int xr_find_store(const char *path, char out[PATH_MAX])
{
	char *p;

	if (!realpath(path, out))
		return -errno;
	while ((p = strrchr(out, '/')) != NULL) {
		char conf[PATH_MAX + 32];
		*p = '\0';
		snprintf(conf, sizeof conf, "%s/%s", out[0] ? out : "", KR_CONFIG_NAME);
		if (access(conf, R_OK) == 0)
			return 0;
	}
	return -ENOENT;
}

int cmd_xray(int argc, char **argv)
{
	struct cli_secret_opts so = {0};
	struct xr_file x = {.fd = -1};
	struct kr_keyring *kr = NULL;
	const char *file = NULL, *store = NULL, *outpath = NULL;
	char found[PATH_MAX];
	bool frames = false;
	struct stat st;
	FILE *out = stdout;
	int rc, ec;

	for (int i = 1; i < argc; i++) {
		int s = cli_secret_opt(&so, argc, argv, &i);
		if (s < 0)
			return EXIT_USAGE;
		if (s > 0)
			continue;
		if (!strcmp(argv[i], "--frames"))
			frames = true;
		else if (!strcmp(argv[i], "--store") && i + 1 < argc)
			store = argv[++i];
		else if (!strcmp(argv[i], "--out") && i + 1 < argc)
			outpath = argv[++i];
		else if (argv[i][0] != '-' && !file)
			file = argv[i];
		else {
			cli_err("xray", "usage: strongroom xray STORE_FILE [--store STORE] [--frames] "
					"[--out FILE] [secret options]");
			return EXIT_USAGE;
		}
	}
	if (!file) {
		cli_err("xray", "usage: strongroom xray STORE_FILE [--store STORE] [--frames] "
				"[--out FILE] [secret options]");
		return EXIT_USAGE;
	}
	if (!store) {
		if (xr_find_store(file, found)) {
			cli_err(file, "not inside a store (no %s above it); use --store", KR_CONFIG_NAME);
			return EXIT_STORE;
		}
		store = found;
	}
	x.path = file;
	x.fd = open(file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (x.fd < 0 || fstat(x.fd, &st) || !S_ISREG(st.st_mode)) {
		cli_err(file, "%s", x.fd < 0 ? strerror(errno) : "not a regular file");
		if (x.fd >= 0)
			close(x.fd);
		return EXIT_FAIL;
	}
	x.size = (uint64_t)st.st_size;
	ec = cli_unlock(store, &so, &kr);
	if (ec != EXIT_OK)
		goto out;
	x.kr = kr;
	const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
	if (!strcmp(base, FMT_DIRMETA_NAME)) {
		rc = xr_dirmeta(&x);
	} else {
		rc = xr_file_open(&x);
		if (rc == 0 && frames) {
			rc = xr_frames(&x);
		} else if (rc == 0) {
			if (outpath && !(out = fopen(outpath, "wbx"))) {
				cli_err(outpath, "%s", strerror(errno));
				ec = EXIT_FAIL;
				goto out;
			}
			rc = xr_content(&x, out);
			if (out != stdout && fclose(out) && rc == 0)
				rc = -EIO;
		}
	}
	if (rc == -EBADMSG)
		cli_err(file, "does not authenticate: changed or damaged");
	else if (rc == -ENOKEY)
		cli_err(file, "its level is not held by this secret");
	else if (rc == -EUCLEAN)
		cli_err(file, "not a strongroom file, or malformed");
	else if (rc && rc != -ENODATA)
		cli_err(file, "%s", strerror(-rc));
	ec = rc == 0 ? EXIT_OK
	     : rc == -EBADMSG || rc == -EUCLEAN || rc == -ENODATA ? EXIT_DAMAGE
								 : cli_exit_for(rc);
out:
	kr_keyring_free(kr);
	close(x.fd);
	return ec;
}
