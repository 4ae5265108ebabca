/**
 * CRC-32 (IEEE 802.3, as ZIP uses it); `crc` continues an earlier call's result. workerd's node:zlib (nodejs_compat)
 * computes it natively: a table-driven loop in JavaScript ran ~17× slower, which matters when the first download of
 * a job recorded before digests were kept reads its outputs whole (output-digests.ts).
 */
export { crc32 } from "node:zlib";
