/*
 * EVALUATE: picks of the datasets that have true coordinates, scored against them.
 */
include { PIXER_EVALUATE } from './modules/pixer_evaluate'

workflow EVALUATE {
    take:
    picks   // [meta, picks folder]
    truth   // [meta, true coordinates]; datasets without truth are not evaluated

    main:
    PIXER_EVALUATE(picks.join(truth))

    emit:
    evaluation = PIXER_EVALUATE.out.evaluation   // [meta, evaluation folder]
    metrics = PIXER_EVALUATE.out.metrics         // [meta, metrics.json]
}
