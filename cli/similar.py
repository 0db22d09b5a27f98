"""``imat similar IMAGE_OR_ID``: the catalogue items most like a photo or a catalogue item.

Embeds the photo with the pushed model's ``embed_images`` signature (or takes a catalogue
item's stored vector), searches the model's similarity index (built by ``imat index`` or the
pipeline's SimilarityIndexer) and prints the k nearest items with cosine scores, labels and
URLs; ``--sheet FILE`` also draws them beside the query as a contact sheet.
"""

import argparse
import os
from typing import List, Optional

from components.similar.index import Hit, SimilarError, SimilarityIndex, model_fingerprint
from imat_common.workdir import DEFAULT_WORKDIR, Workdir
from cli.flags import local_model

TILE, CAPTION = 160, 46  # contact sheet: image square and caption height, pixels


def find_index(workdir: str, model_dir: str) -> str:
    """The index folder of a model: ``WORKDIR/similar/<model version>``."""
    from components.similar.embed_job import index_version

    return os.path.join(Workdir(workdir).similar, index_version(model_dir))


def resolve_item(index: SimilarityIndex, query: str) -> Optional[str]:
    """An item id from ``split/id`` or a bare image id when one split has it; None when no item has it.

    Raises:
      SimilarError: a bare id that several splits hold.
    """
    if query in index:
        return query
    matches = [item.item_id for item in index.items if item.item_id.split("/", 1)[-1] == query]
    if len(matches) > 1:
        raise SimilarError(
            f"{query}: several catalogue items have this id ({', '.join(matches[:5])}); name one as SPLIT/ID"
        )
    return matches[0] if matches else None


def embed(model_dir: str, jpegs: List[bytes]):
    """Unit vectors of images from the model's ``embed_images`` signature."""
    import tensorflow as tf

    from components.similar.embed_job import EMBED_INPUT, EMBED_OUTPUT, EMBED_SIGNATURE

    signature = tf.saved_model.load(model_dir).signatures[EMBED_SIGNATURE]
    return signature(**{EMBED_INPUT: tf.constant(jpegs)})[EMBED_OUTPUT].numpy()


def describe_labels(index: SimilarityIndex, label_ids) -> str:
    names = index.label_names
    return ", ".join(f"{names[i][0]}: {names[i][1]}" if i in names else str(i) for i in label_ids) or "-"


def contact_sheet(query_jpeg: bytes, query_caption: str, hits: List[Hit], index: SimilarityIndex, path: str) -> None:
    """Writes the query and its results side by side, each with a caption (PNG or JPEG by suffix)."""
    import io

    from PIL import Image, ImageDraw

    sheet = Image.new("RGB", ((len(hits) + 1) * (TILE + 8) + 8, TILE + CAPTION + 16), "white")
    draw = ImageDraw.Draw(sheet)
    tiles = [(query_jpeg, ["query", query_caption[:24]], (200, 40, 40))]
    names = index.label_names
    for hit in hits:
        first = names[hit.item.labels[0]][1] if hit.item.labels and hit.item.labels[0] in names else ""
        tiles.append(
            (
                index.thumbnail(hit.row),
                [f"#{hit.rank}  {hit.score:.3f}", hit.item.item_id[:24], first[:24]],
                (180, 180, 180),
            )
        )
    for n, (jpeg, lines, border) in enumerate(tiles):
        x = 8 + n * (TILE + 8)
        draw.rectangle([x - 2, 6, x + TILE + 1, 9 + TILE], outline=border, width=2)
        if jpeg:
            image = Image.open(io.BytesIO(jpeg)).convert("RGB")
            image.thumbnail((TILE, TILE))
            sheet.paste(image, (x + (TILE - image.width) // 2, 8 + (TILE - image.height) // 2))
        else:
            draw.text((x + 8, 8 + TILE // 2), "no thumbnail", fill=(120, 120, 120))
        for i, line in enumerate(lines):
            draw.text((x, 14 + TILE + i * 14), line, fill=(0, 0, 0))
    sheet.save(path)


def main(argv: Optional[List[str]] = None) -> None:
    """``imat similar``: bad input exits with one line naming the file, id or index and what is wrong."""
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="imat similar", description=__doc__)
    parser.add_argument("query", metavar="IMAGE_OR_ID", help="an image file, or a catalogue item id (SPLIT/ID or ID)")
    parser.add_argument("--k", type=int, default=5, help="how many similar items")
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR)
    parser.add_argument("--model", help="SavedModel folder; default: the newest pushed in WORKDIR/serving")
    parser.add_argument("--index", help="index folder; default: WORKDIR/similar/<model version>")
    parser.add_argument("--sheet", metavar="FILE", help="also write a contact sheet image (.png or .jpg)")
    args = parser.parse_args(argv)
    if args.k < 1:
        parser.error(f"--k must be at least 1, got {args.k}")
    model_dir = local_model(parser, args)
    try:
        index_dir = args.index or find_index(args.workdir, model_dir)
        if not args.index and not os.path.isdir(index_dir):
            raise SimilarError(
                f"no index for model {model_dir} at {index_dir}: build one with "
                f"`imat index --model {model_dir}` (or the pipeline's SimilarityIndexer), or pass --index"
            )
        index = SimilarityIndex.load(index_dir, expected_fingerprint=model_fingerprint(model_dir), model_path=model_dir)
        item_id = None if os.path.exists(args.query) else resolve_item(index, args.query)
        if item_id is not None:
            query_jpeg = index.thumbnail(index.row_of(item_id))
            hits = index.search(index.vector_of(item_id)[None], args.k, exclude=[item_id])[0]
        elif os.path.isfile(args.query):
            from cli.predict import load_images

            index.check_k(args.k)  # before loading the model: a k too large fails at once
            try:
                query_jpeg = load_images([args.query])[0]
            except ValueError as e:  # names the file and what is wrong with it
                raise SimilarError(str(e)) from None
            import tensorflow as tf

            from imat_common.image_policy import decoder_message

            try:
                vectors = embed(model_dir, [query_jpeg])
            except tf.errors.OpError as e:  # bytes Pillow took that the model's decoder refuses
                raise SimilarError(f"{args.query}: the model cannot decode it: {decoder_message(e)}") from None
            hits = index.search(vectors, args.k)[0]
        elif os.path.isdir(args.query):
            raise SimilarError(f"{args.query}: a folder, not an image file")
        else:
            raise SimilarError(
                f"{args.query}: no such image file, and no catalogue item with that id in {index_dir} "
                f"(ids look like {index.items[0].item_id!r})"
            )
    except SimilarError as e:
        parser.error(str(e))
    manifest = index.manifest
    print(f"query: {args.query}")
    print(f"model: {model_dir}; index: {index_dir} ({index.count} items, {manifest['backend']})")
    for hit in hits:
        print(f"{hit.rank:3d}. {hit.score:.3f}  {hit.item.item_id}  {describe_labels(index, hit.item.labels)}")
        if hit.item.url:
            print(f"      {hit.item.url}")
    if args.sheet:
        contact_sheet(query_jpeg, os.path.basename(args.query) if item_id is None else item_id, hits, index, args.sheet)
        print(f"contact sheet: {args.sheet}")
