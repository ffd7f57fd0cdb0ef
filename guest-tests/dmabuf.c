/*
 * dmabuf.c - the DMABUF suite: vfio-pci DMABUF export of a device's BAR
 * ranges, and what the series "vfio/pci: Add mmap() for DMABUFs" adds on
 * top: mmap of DMABUF fds, memory attributes (NC/WC), permanent revocation,
 * and the lifetime rules (fd close, reset, memory disable, device close),
 * plus 2 MiB and 1 GiB mappings and cases across two devices of one VM.
 *
 *	dmabuf [VENDOR:DEVICE | DOMAIN:BUS:DEV.FN] [RAM_BAR]
 *
 * runs it against edu-plus (1234:11e8, the default; RAM in BAR1, 64 MiB)
 * or the gpu (1af4:10f0; VRAM in BAR2, 4 GiB by default), or any device
 * with a mappable BAR of at least 64 MiB (dmabuf_target.c). The cases use
 * the first 64 MiB of that "RAM BAR", and a 1 GiB range of a larger one.
 *
 * Every feature is detected at run time (VFIO_DEVICE_FEATURE with PROBE,
 * and by behaviour: on a stock kernel mmap() of a DMABUF fd fails EINVAL),
 * and a case whose feature is missing reports "ok N name # SKIP <why>" --
 * never a pass, never a failure. So a stock 7.3 kernel passes the export
 * cases and skips the rest; a kernel carrying the series runs everything.
 *
 * Device-side truth: every write through any mapping prints
 *	# bar-write region=<index> offset=0x<BAR offset> value=0x<u32>
 * with the BAR offset the buffer's ranges imply; the host checks the last
 * value per RAM BAR offset against the server's own memory behind that BAR,
 * which catches a kernel that maps the right-looking bytes to the wrong
 * PFNs. Region 0 lines are the device's read/write register in BAR0.
 *
 * Cases live in dmabuf_export.c, dmabuf_device.c, dmabuf_mmap.c,
 * dmabuf_memattr.c, dmabuf_revoke.c, dmabuf_huge.c, dmabuf_pud.c,
 * dmabuf_cross.c, dmabuf_restore.c and dmabuf_lifetime.c; the helpers in
 * dmabuf_util.c, dmabuf_map.c, dmabuf_pat.c and dmabuf_target.c. Which RAM
 * BAR bytes each case uses: dmabuf_cases.h.
 */
#include <stddef.h>
#include <sys/mman.h>

#include "dmabuf_cases.h"
#include "dmabuf_util.h"
#include "ktap.h"

static const struct ktap_case cases[] = {
	{ "open_device", case_open_device },
	{ "feature_probe", case_feature_probe },
	/* export */
	{ "export_bar0_whole", case_export_bar0_whole },
	{ "export_ram_bar_whole", case_export_ram_bar_whole },
	{ "export_ram_bar_one_range", case_export_ram_bar_one_range },
	{ "export_ram_bar_several_ranges", case_export_ram_bar_several_ranges },
	{ "export_bar0_several_ranges", case_export_bar0_several_ranges },
	{ "export_other_bars_whole", case_export_other_bars_whole },
	{ "export_zero_length_refused", case_export_zero_length_refused },
	{ "export_out_of_range_refused", case_export_out_of_range_refused },
	{ "export_unaligned_refused", case_export_unaligned_refused },
	{ "export_overlapping_ranges", case_export_overlapping_ranges },
	{ "export_bad_arguments_refused", case_export_bad_arguments_refused },
	/* the device fd's own BAR mmaps (no DMABUF feature needed) */
	{ "device_mmap_nonzero_offset", case_device_mmap_nonzero_offset },
	{ "device_mmap_past_end_refused", case_device_mmap_past_end_refused },
	/* mmap of DMABUFs */
	{ "mmap_whole_buffer", case_mmap_whole_buffer },
	{ "mmap_bar0_registers", case_mmap_bar0_registers },
	{ "mmap_nonzero_offset", case_mmap_nonzero_offset },
	{ "mmap_past_end_refused", case_mmap_past_end_refused },
	{ "mmap_offset_past_end_refused", case_mmap_offset_past_end_refused },
	{ "mmap_private_refused", case_mmap_private_refused },
	{ "mmap_multi_range_layout", case_mmap_multi_range_layout },
	/* aliasing */
	{ "alias_vfio_device_mmap", case_alias_vfio_device_mmap },
	{ "alias_two_dmabufs", case_alias_two_dmabufs },
	{ "alias_two_mmaps_one_dmabuf", case_alias_two_mmaps_one_dmabuf },
	{ "alias_overlapping_ranges", case_alias_overlapping_ranges },
	{ "partial_munmap_split", case_partial_munmap_split },
	/* memory attributes */
	{ "memattr_default_nc", case_memattr_default_nc },
	{ "memattr_set_wc", case_memattr_set_wc },
	{ "memattr_unknown_refused", case_memattr_unknown_refused },
	{ "memattr_wc_installed", case_memattr_wc_installed },
	/* revoke */
	{ "revoke_sigbus_all_mappings", case_revoke_sigbus_all_mappings },
	{ "revoke_twice_ebadfd", case_revoke_twice_ebadfd },
	{ "revoke_non_dmabuf_einval", case_revoke_non_dmabuf_einval },
	{ "revoke_other_device_enodev", case_revoke_other_device_enodev },
	{ "revoke_foreign_exporter_enodev",
	  case_revoke_foreign_exporter_enodev },
	{ "revoke_mmap_refused", case_revoke_mmap_refused },
	{ "revoke_fresh_export_works", case_revoke_fresh_export_works },
	{ "revoke_dup_fd_same_buffer", case_revoke_dup_fd_same_buffer },
	{ "revoke_v2_ioctl", case_revoke_v2_ioctl },
	{ "revoke_survives_memory_toggle", case_revoke_survives_memory_toggle },
	{ "revoke_survives_reset", case_revoke_survives_reset },
	/* huge mappings */
	{ "huge_ram_bar_64m_aligned", case_huge_ram_bar_64m_aligned },
	{ "huge_pud_device_mmap_1g", case_huge_pud_device_mmap_1g },
	{ "huge_pud_dmabuf_1g", case_huge_pud_dmabuf_1g },
	/* two devices: this one and another in the same VM */
	{ "cross_device_exports_independent",
	  case_cross_device_exports_independent },
	{ "cross_device_close_revokes_only_its_own",
	  case_cross_device_close_revokes_only_its_own },
	/* lifetime (the last two close the device) */
	{ "lifetime_mapping_survives_fd_close",
	  case_lifetime_mapping_survives_fd_close },
	{ "lifetime_reset_restores_dmabuf", case_lifetime_reset_restores_dmabuf },
	{ "lifetime_memory_disable_revokes_dmabuf",
	  case_lifetime_memory_disable_revokes_dmabuf },
	{ "lifetime_memory_enable_restores_dmabuf",
	  case_lifetime_memory_enable_restores_dmabuf },
	{ "lifetime_memory_disable_revokes_device_mmap",
	  case_lifetime_memory_disable_revokes_device_mmap },
	{ "lifetime_memory_enable_restores_device_mmap",
	  case_lifetime_memory_enable_restores_device_mmap },
	{ "lifetime_close_vfio_fds_revokes",
	  case_lifetime_close_vfio_fds_revokes },
	{ "lifetime_mmap_after_close_refused",
	  case_lifetime_mmap_after_close_refused },
	{ "cleanup", case_cleanup },
};

int main(int argc, char **argv)
{
	const size_t n = sizeof(cases) / sizeof(cases[0]);
	int usage = db_parse_args(argc, argv);

	if (usage)
		return usage == 1 ? 0 : usage;
	ktap_plan((int)n);
	if (db.want_bdf)
		ktap_diag("dmabuf: vfio-pci DMABUF export, mmap, memattr, "
			  "revoke and lifetime on the device at %s",
			  db.want_bdf);
	else
		ktap_diag("dmabuf: vfio-pci DMABUF export, mmap, memattr, "
			  "revoke and lifetime on %04x:%04x", db.want_vendor,
			  db.want_device);
	ktap_run_cases(cases, n);
	case_cleanup();		/* a no-op when cleanup already ran */
	return ktap_finish();
}
