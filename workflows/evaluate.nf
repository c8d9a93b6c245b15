/*
 * EVALUATE: picks of the datasets that have true coordinates, scored against them; and an HTML
 * report for every picked dataset (with accuracy where the truth is known).
 */
include { PIXER_EVALUATE } from './modules/pixer_evaluate'
include { PIXER_REPORT } from './modules/pixer_report'

workflow EVALUATE {
    take:
    picks     // [meta, picks folder]
    picking   // [meta, micrographs that were picked]
    truth     // [meta, true coordinates]; datasets without truth are not evaluated

    main:
    PIXER_EVALUATE(picks.join(truth))
    PIXER_REPORT(picks.join(picking, failOnMismatch: true).join(truth, remainder: true)
        .map { meta, p, mics, t -> [meta, p, mics, t ?: []] })

    emit:
    evaluation = PIXER_EVALUATE.out.evaluation   // [meta, evaluation folder]
    metrics = PIXER_EVALUATE.out.metrics         // [meta, metrics.json]
    report = PIXER_REPORT.out.report             // [meta, report.html]
}
