import { usePictureUrl } from "../api";

/** One service picture, fetched with the key and shown from a blob: URL. */
export function Picture({ link, alt, className }: { link: string; alt: string; className?: string }) {
  const { url, error } = usePictureUrl(link);
  if (error) {
    return (
      <div className="picture-missing" role="img" aria-label={`${alt}: ${error.message}`}>
        {error.title}: {error.message}
      </div>
    );
  }
  if (!url) return <div className="picture-loading" role="img" aria-label={`${alt} (loading)`} />;
  return <img className={className ?? "picture"} src={url} alt={alt} />;
}
