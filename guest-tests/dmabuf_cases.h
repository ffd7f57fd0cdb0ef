/*
 * dmabuf_cases.h - the cases of the DMABUF suite, in KTAP order (dmabuf.c
 * lists them). Each returns NULL when it ran, or why it was skipped.
 *
 * The RAM BAR's first 64 MiB are carved up so that no two cases share bytes
 * (and every write's final value is known): 1-3 MiB mmap, 3-4 MiB
 * multi-range layout, 4-8 MiB aliasing and partial munmap, 8-9 MiB memory
 * attributes, 9-12 MiB revoke, 12-13 MiB lifetime, 13 MiB, 14-16 MiB and
 * 22-24 MiB memory-disable, 18-20 MiB + 20 KiB and the BAR's last page
 * device-fd mmaps, 26 MiB permanent revoke through a memory toggle or reset,
 * 28 MiB cross-device (60 MiB of the other device's); the huge-mapping case
 * writes one word at in-page offset 0xa00 of every page (the others use
 * 0x100-0x60f). The 1 GiB cases use [1 GiB, 2 GiB) of a BAR of 2 GiB or more.
 * No case writes at in-page offsets 0 or 0xffc, where edu_plus_basic leaves
 * its pattern (bar1_pattern.h) for the host to check.
 */
#ifndef EDU_PLUS_DMABUF_CASES_H
#define EDU_PLUS_DMABUF_CASES_H

/* dmabuf_export.c */
const char *case_open_device(void);
const char *case_feature_probe(void);
const char *case_export_bar0_whole(void);
const char *case_export_ram_bar_whole(void);
const char *case_export_ram_bar_one_range(void);
const char *case_export_ram_bar_several_ranges(void);
const char *case_export_bar0_several_ranges(void);
const char *case_export_zero_length_refused(void);
const char *case_export_out_of_range_refused(void);
const char *case_export_unaligned_refused(void);
const char *case_export_overlapping_ranges(void);
const char *case_export_bad_arguments_refused(void);
const char *case_export_other_bars_whole(void);

/* dmabuf_device.c */
const char *case_device_mmap_nonzero_offset(void);
const char *case_device_mmap_past_end_refused(void);

/* dmabuf_mmap.c */
const char *case_mmap_whole_buffer(void);
const char *case_mmap_bar0_registers(void);
const char *case_mmap_nonzero_offset(void);
const char *case_mmap_past_end_refused(void);
const char *case_mmap_offset_past_end_refused(void);
const char *case_mmap_private_refused(void);
const char *case_mmap_multi_range_layout(void);
const char *case_alias_vfio_device_mmap(void);
const char *case_alias_two_dmabufs(void);
const char *case_alias_two_mmaps_one_dmabuf(void);
const char *case_alias_overlapping_ranges(void);
const char *case_partial_munmap_split(void);

/* dmabuf_memattr.c */
const char *case_memattr_default_nc(void);
const char *case_memattr_set_wc(void);
const char *case_memattr_unknown_refused(void);
const char *case_memattr_wc_installed(void);

/* dmabuf_revoke.c */
const char *case_revoke_sigbus_all_mappings(void);
const char *case_revoke_twice_ebadfd(void);
const char *case_revoke_non_dmabuf_einval(void);
const char *case_revoke_other_device_enodev(void);
const char *case_revoke_foreign_exporter_enodev(void);
const char *case_revoke_mmap_refused(void);
const char *case_revoke_fresh_export_works(void);
const char *case_revoke_dup_fd_same_buffer(void);
const char *case_revoke_v2_ioctl(void);

/* dmabuf_huge.c */
const char *case_huge_ram_bar_64m_aligned(void);

/* dmabuf_pud.c */
const char *case_huge_pud_device_mmap_1g(void);
const char *case_huge_pud_dmabuf_1g(void);

/* dmabuf_cross.c */
const char *case_cross_device_exports_independent(void);
const char *case_cross_device_close_revokes_only_its_own(void);

/* dmabuf_restore.c */
const char *case_revoke_survives_memory_toggle(void);
const char *case_revoke_survives_reset(void);
const char *case_lifetime_reset_restores_dmabuf(void);
const char *case_lifetime_memory_disable_revokes_dmabuf(void);
const char *case_lifetime_memory_enable_restores_dmabuf(void);
const char *case_lifetime_memory_disable_revokes_device_mmap(void);
const char *case_lifetime_memory_enable_restores_device_mmap(void);

/* dmabuf_lifetime.c */
const char *case_lifetime_mapping_survives_fd_close(void);
const char *case_lifetime_close_vfio_fds_revokes(void);
const char *case_lifetime_mmap_after_close_refused(void);
const char *case_cleanup(void);

#endif /* EDU_PLUS_DMABUF_CASES_H */
