from typing_extensions import Buffer

def rpis_into(teks: Buffer, firsts: Buffer, counts: Buffer, out: Buffer, /) -> None: ...
def rpis_match(
    teks: Buffer,
    firsts: Buffer,
    counts: Buffer,
    bloom: Buffer,
    shift: int,
    high: Buffer,
    low: Buffer,
    buckets: Buffer,
    hits: Buffer,
    /,
) -> int: ...
def _path(name: str = ..., /) -> str: ...
