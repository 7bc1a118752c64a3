/** The image writer's typed error: one stable code per way an image write can fail. */
export class ImageWriteError extends Error {
  constructor(
    readonly code: 'CHECKSUM_MISMATCH' | 'VERIFY_FAILED' | 'CHECKSUM_INVALID' | 'UNSAFE_IMAGE' | 'CONVERT_FAILED' | 'MD5_NOT_ALLOWED' | 'DOWNLOAD_FAILED' | 'HTTP_ERROR' | 'DECOMPRESS_FAILED' | 'IO_ERROR' | 'CANCELLED',
    message: string,
  ) {
    super(message);
    this.name = 'ImageWriteError';
  }
}
