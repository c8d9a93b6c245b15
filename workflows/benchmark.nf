/*
 * BENCHMARK: pixer benchmark over a samplesheet of many datasets (pixer benchmark's columns:
 * dataset, micrographs, apix, diameter, truth, model, peers; absolute paths), with --model for
 * the rows that name none; one comparison table in <outdir>/benchmark/.
 */
include { PIXER_BENCHMARK } from './modules/pixer_benchmark'

workflow BENCHMARK {
    take:
    samplesheet   // path of the samplesheet CSV

    main:
    sheet = file(samplesheet, checkIfExists: true)
    PIXER_BENCHMARK(Channel.of([[id: sheet.baseName], sheet, params.model ? file(params.model, checkIfExists: true) : []]))

    emit:
    benchmark = PIXER_BENCHMARK.out.benchmark   // [meta, benchmark folder]
    table = PIXER_BENCHMARK.out.table           // [meta, benchmark.csv]
}
