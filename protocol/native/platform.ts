/**
 * The platforms the native boundary was written for. libc.ts lays out msghdr, cmsghdr, struct
 * stat and friends by hand for 64-bit Linux with glibc (LP64, the generic or x86_64 syscall
 * ABI); elsewhere those offsets would be silently wrong, so we refuse to start instead.
 */

export class UnsupportedPlatformError extends Error {}

export interface PlatformFacts {
  platform: string;
  arch: string;
  /** glibc's runtime version, or undefined (musl, or not Linux). */
  glibc: string | undefined;
}

export function currentPlatform(): PlatformFacts {
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return { platform: process.platform, arch: process.arch, glibc: header?.glibcVersionRuntime };
}

/** Why this platform cannot run the server, or undefined when it can. */
export function unsupportedReason(p: PlatformFacts): string | undefined {
  if (p.platform !== 'linux') return `edu-plus needs Linux (vfio-user, memfd, SCM_RIGHTS); this is ${p.platform}`;
  if (p.arch !== 'x64' && p.arch !== 'arm64') {
    return `edu-plus supports x86_64 and aarch64 Linux; this is ${p.arch}, whose struct layouts the native boundary does not know`;
  }
  if (p.glibc === undefined) {
    return 'edu-plus needs glibc (it loads libc.so.6 and lays out its structs); this Linux has another C library (musl?)';
  }
  return undefined;
}

export function assertSupportedPlatform(p: PlatformFacts = currentPlatform()): void {
  const reason = unsupportedReason(p);
  if (reason !== undefined) throw new UnsupportedPlatformError(reason);
}
