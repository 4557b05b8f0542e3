/* kr_config.c - the vault config file, strongroom.conf (docs/format.md
 * section 2): defaults, level lists, encoding, parsing and its MAC.
 *
 * Invariants:
 *  - kr_config_parse accepts exactly the bytes kr_config_encode writes for a
 *    valid config, and nothing else: every length is bounded before use, the
 *    file length must match the parsed content exactly;
 *  - an unknown version or required feature is -EOPNOTSUPP, checked before
 *    anything that a later version may lay out differently;
 *  - the MAC is verified only with the vault key (kr_keyring.c), in
 *    constant time; until then a parsed config is untrusted display data.
 */
#include <errno.h>
#include <string.h>

#include "kr_internal.h"

static void put16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
}

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint16_t get16(const unsigned char *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static unsigned log2_exact(uint32_t v)
{
	unsigned n = 0;
	while (v > 1) {
		v >>= 1;
		n++;
	}
	return n;
}

static bool chunk_size_valid(uint32_t n)
{
	return n >= KR_CHUNK_SIZE_MIN && n <= KR_CHUNK_SIZE_MAX && (n & (n - 1)) == 0;
}

bool kr_level_name_valid(const char *name)
{
	size_t n = strnlen(name, KR_LEVEL_NAME_MAX + 1);
	if (n == 0 || n > KR_LEVEL_NAME_MAX)
		return false;
	if (name[0] < 'a' || name[0] > 'z')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* Structural validity shared by the encoder and the parser. */
static int config_check(const struct kr_config *cfg)
{
	if (!chunk_size_valid(cfg->chunk_size))
		return -EINVAL;
	if (cfg->nlevels < 1 || cfg->nlevels > KR_MAX_LEVELS)
		return -EINVAL;
	unsigned chunk_log2 = log2_exact(cfg->chunk_size);
	for (unsigned i = 0; i < cfg->nlevels; i++) {
		const struct kr_level_cfg *l = &cfg->levels[i];
		if (memchr(l->name, '\0', sizeof l->name) == NULL || !kr_level_name_valid(l->name))
			return -EINVAL;
		if (l->compress > 19 || l->pad_log2 > chunk_log2)
			return -EINVAL;
		for (unsigned j = 0; j < i; j++)
			if (strcmp(cfg->levels[j].name, l->name) == 0)
				return -EINVAL;
	}
	return 0;
}

/* Compression and padding by position: the top of two or more levels is
 * uncompressed and padded to whole chunks, the rest compress lightly: zstd
 * level 1 stores CSV records in 1.02x the bytes of level 3 at 1.5x its
 * speed (docs/performance.md). */
static void levels_apply_defaults(struct kr_config *cfg)
{
	unsigned chunk_log2 = log2_exact(cfg->chunk_size);
	for (unsigned i = 0; i < cfg->nlevels; i++) {
		bool top = cfg->nlevels > 1 && i == cfg->nlevels - 1;
		cfg->levels[i].compress = top ? 0 : 1;
		cfg->levels[i].pad_log2 = top ? (uint8_t)chunk_log2 : 4;
	}
}

void kr_config_default(struct kr_config *cfg)
{
	static const char *const names[] = {"public", "internal", "confidential", "restricted"};
	memset(cfg, 0, sizeof *cfg);
	cfg->version = KR_CONF_VERSION;
	cfg->chunk_size = KR_CHUNK_SIZE_DEFAULT;
	cfg->nlevels = 4;
	for (unsigned i = 0; i < 4; i++)
		snprintf(cfg->levels[i].name, sizeof cfg->levels[i].name, "%s", names[i]);
	levels_apply_defaults(cfg);
}

int kr_config_set_levels(struct kr_config *cfg, const char *csv)
{
	struct kr_config tmp = *cfg;
	unsigned n = 0;
	const char *p = csv;

	memset(tmp.levels, 0, sizeof tmp.levels);
	for (;;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (n >= KR_MAX_LEVELS || len == 0 || len > KR_LEVEL_NAME_MAX)
			return -EINVAL;
		memcpy(tmp.levels[n].name, p, len);
		tmp.levels[n].name[len] = '\0';
		n++;
		if (!end)
			break;
		p = end + 1;
	}
	tmp.nlevels = n;
	levels_apply_defaults(&tmp);
	if (config_check(&tmp) != 0)
		return -EINVAL;
	*cfg = tmp;
	return 0;
}

int kr_config_set_chunk_size(struct kr_config *cfg, uint32_t chunk_size)
{
	if (!chunk_size_valid(chunk_size))
		return -EINVAL;
	unsigned old_log2 = log2_exact(cfg->chunk_size);
	unsigned new_log2 = log2_exact(chunk_size);
	for (unsigned i = 0; i < cfg->nlevels && i < KR_MAX_LEVELS; i++) {
		struct kr_level_cfg *l = &cfg->levels[i];
		if (l->pad_log2 == old_log2 || l->pad_log2 > new_log2)
			l->pad_log2 = (uint8_t)new_log2;
	}
	cfg->chunk_size = chunk_size;
	return 0;
}

ssize_t kr_config_encode(const struct kr_config *cfg, const unsigned char mac_key[KR_KEY_BYTES],
			 unsigned char *out, size_t cap)
{
	size_t off = 0;

	if (config_check(cfg) != 0)
		return -EINVAL;
	if (cap < KR_CONF_MAX_BYTES)
		return -ENOSPC;
	memcpy(out, KR_CONF_MAGIC, KR_CONF_MAGIC_BYTES);
	put16(out + 8, KR_CONF_VERSION);
	put16(out + 10, 0);
	put32(out + 12, 0); /* required features */
	put32(out + 16, 0); /* optional features */
	memcpy(out + 20, cfg->vault_id, KR_VAULT_ID_BYTES);
	put32(out + 36, cfg->chunk_size);
	out[40] = (unsigned char)cfg->nlevels;
	off = KR_CONF_FIXED_BYTES;
	for (unsigned i = 0; i < cfg->nlevels; i++) {
		const struct kr_level_cfg *l = &cfg->levels[i];
		size_t n = strlen(l->name);
		out[off++] = (unsigned char)n;
		memcpy(out + off, l->name, n);
		off += n;
		out[off++] = l->compress;
		out[off++] = l->pad_log2;
	}
	memcpy(out + off, cfg->audit_pk, sizeof cfg->audit_pk);
	off += sizeof cfg->audit_pk;
	crypto_generichash(out + off, KR_CONF_MAC_BYTES, out, off, mac_key, KR_KEY_BYTES);
	off += KR_CONF_MAC_BYTES;
	return (ssize_t)off;
}

int kr_config_parse(const unsigned char *buf, size_t len, struct kr_config *cfg)
{
	struct kr_config tmp;
	size_t off;

	memset(&tmp, 0, sizeof tmp);
	if (len < 10 || memcmp(buf, KR_CONF_MAGIC, KR_CONF_MAGIC_BYTES) != 0)
		return -EUCLEAN;
	tmp.version = get16(buf + 8);
	if (tmp.version != KR_CONF_VERSION)
		return -EOPNOTSUPP;
	if (len < KR_CONF_FIXED_BYTES || len > KR_CONF_MAX_BYTES)
		return -EUCLEAN;
	if (get16(buf + 10) != 0)
		return -EUCLEAN;
	if ((get32(buf + 12) & ~KR_CONF_REQUIRED_KNOWN) != 0)
		return -EOPNOTSUPP;
	/* Optional features (buf + 16) a reader does not know are ignored. */
	memcpy(tmp.vault_id, buf + 20, KR_VAULT_ID_BYTES);
	tmp.chunk_size = get32(buf + 36);
	tmp.nlevels = buf[40];
	if (tmp.nlevels < 1 || tmp.nlevels > KR_MAX_LEVELS)
		return -EUCLEAN;
	off = KR_CONF_FIXED_BYTES;
	for (unsigned i = 0; i < tmp.nlevels; i++) {
		size_t n;
		if (off + 1 > len)
			return -EUCLEAN;
		n = buf[off++];
		if (n < 1 || n > KR_LEVEL_NAME_MAX || off + n + 2 > len)
			return -EUCLEAN;
		memcpy(tmp.levels[i].name, buf + off, n);
		tmp.levels[i].name[n] = '\0';
		if (strlen(tmp.levels[i].name) != n)
			return -EUCLEAN;
		off += n;
		tmp.levels[i].compress = buf[off++];
		tmp.levels[i].pad_log2 = buf[off++];
	}
	if (len != off + sizeof tmp.audit_pk + KR_CONF_MAC_BYTES)
		return -EUCLEAN;
	memcpy(tmp.audit_pk, buf + off, sizeof tmp.audit_pk);
	if (config_check(&tmp) != 0)
		return -EUCLEAN;
	*cfg = tmp;
	return 0;
}

int kr_config_mac_verify(const unsigned char *buf, size_t len,
			 const unsigned char mac_key[KR_KEY_BYTES])
{
	unsigned char mac[KR_CONF_MAC_BYTES];
	int rc;

	if (len < KR_CONF_MAC_BYTES)
		return -EUCLEAN;
	crypto_generichash(mac, sizeof mac, buf, len - KR_CONF_MAC_BYTES, mac_key, KR_KEY_BYTES);
	rc = crypto_verify_32(mac, buf + len - KR_CONF_MAC_BYTES) == 0 ? 0 : -EUCLEAN;
	sodium_memzero(mac, sizeof mac);
	return rc;
}

int kr_config_load(const char *store, struct kr_config *cfg)
{
	unsigned char buf[KR_CONF_MAX_BYTES];
	char path[4096];
	ssize_t n;
	int rc;

	rc = kr_path_join(path, sizeof path, store, KR_CONFIG_NAME);
	if (rc)
		return rc;
	n = kr_file_read(path, buf, sizeof buf);
	if (n < 0)
		return (int)n;
	return kr_config_parse(buf, (size_t)n, cfg);
}
