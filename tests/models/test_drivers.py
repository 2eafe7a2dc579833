import numpy as np
import pytest

from models.drivers import describe, top_drivers


@pytest.mark.parametrize(
    ("feature", "value", "words"),
    [
        ("census_manufacturing_share_rel", 0.052, "manufacturing jobs +5.2 points against the median county"),
        ("census_share_age_65p_rel", -0.01, "residents aged 65+ -1.0 points against the median county"),
        (
            "pref_tertiary_share_rel",
            0.03,
            "prefecture's services share of GDP +3.0 points against the median county's prefecture",
        ),
        ("viirs_mean_rel", np.log(2.3), "night-light radiance 2.3x the median county's"),
        ("pref_gdp_per_capita_rel", np.log(0.61), "prefecture GDP per head 0.61x the median county's prefecture's"),
        ("census_education_years_rel", 0.6, "schooling +0.6 years against the median county"),
        ("census_household_size_rel", -0.31, "household size -0.31 persons against the median county"),
        ("census_education_years_rel", -1.04, "schooling -1.0 years against the median county"),
        ("census_education_years_rel", 2.46, "schooling +2.5 years against the median county"),
        ("viirs_growth_1y_rel", np.log(1.11), "night lights +11 % against the median county in 1 year"),
        ("belts_within_100km_share", 0.05, "5.0% of all belts within 100 km"),
        ("villages_within_50km_share", 0.002, "0.2% of all Taobao villages within 50 km"),
        ("belts_same_province_share", 0.106, "10.6% of all belts in the same province"),
        ("dist_nearest_belt_km_rel", np.log(0.3), "nearest belt at 0.3x the median county's distance"),
        ("dist_nearest_belt_km_rel", np.nan, "no data on distance to the nearest belt"),
        ("census_it_share_rel", np.nan, "no data on IT jobs"),
        ("pref_population_rel", np.nan, "no data on prefecture population"),
        ("viirs_growth_1y_rel", np.nan, "no data on night-light growth over 1 year"),
        ("belts_within_50km_share", np.nan, "no data on belts within 50 km"),
        ("platform_gmv_growth_yoy", np.nan, "no data on GMV growth"),
        ("platform_live_orders", 4021.6, "platform live orders 4,022"),  # a further platform metric
        ("platform_refund_rate", -0.0523, "platform refund rate -0.0523"),
    ],
)
def test_indicators_read_as_words(feature, value, words):
    assert describe(feature, value) == words


def test_top_drivers_lists_only_features_that_push_the_score_up():
    names = ["belts_within_100km_share", "census_manufacturing_share_rel", "viirs_mean_rel"]
    contrib = np.array([[0.5, -0.2, 0.1], [-0.1, -0.3, -0.2]])
    numbers = np.array([[0.03, -0.05, 0.0], [0.0, 0.0, 0.0]])
    assert top_drivers(contrib, numbers, names) == [
        "3.0% of all belts within 100 km; night-light radiance 1.0x the median county's",
        "",
    ]
