"""kvcalc gpus: the GPU catalog."""


from kvcalc.commands.common import catalogs_of, out, print_json
from kvcalc.commands.options import GPUCatalogOpt, JsonOpt


def gpus_cmd(json_out: JsonOpt = False, gpu_catalog: GPUCatalogOpt = None) -> None:
    """List the GPU catalog: memory as the driver reports it, bandwidth, sources (--json)."""
    from kvcalc.capacity.gpus import catalog
    from kvcalc.render_fit import gpus_table

    entries = list(catalog(catalogs_of(gpu_catalog)).values())
    if json_out:
        print_json([gpu.model_dump() for gpu in entries])
        return
    out.print(gpus_table(entries))
